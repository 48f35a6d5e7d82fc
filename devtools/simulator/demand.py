"""Riders and their plans: who lives near which stop, where they go, how they come back.

A *ride* is (pattern, board position, alight position) on the base network. Plans are drawn
once for a persistent population (commuters take the same journey every day, as real cards
do); each day decides who travels and when. Returns are planned on the opposite direction of
the same route, from a stop within walking distance of where the rider got off, to a stop
within walking distance of where they started: the two assumptions of trip chaining
(Barry et al. 2002, methods_and_kpis.md §1.1) hold by construction for those riders, and fail,
as in real life, for one-way days, paper tickets and riders who do not validate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devtools.simulator.network import BaseNetwork, haversine_m
from devtools.simulator.params import Params

WORKER, STUDENT, OCCASIONAL = 0, 1, 2
RIDER_TYPES = ("worker", "student", "occasional")

FARES = (
    # name, price (EUR), is_pass
    ("Abonnement mensuel", 0.0, True),
    ("Abonnement annuel", 0.0, True),
    ("Abonnement jeune", 0.0, True),
    ("Abonnement senior", 0.0, True),
    ("Tarif solidaire", 0.0, True),
    ("Ticket unité", 1.60, False),
    ("Carnet 10 voyages", 1.40, False),
    ("Pass 24h", 4.50, False),
    ("Ticket papier", 1.80, False),
)
FARE_INDEX = {name: i for i, (name, _, _) in enumerate(FARES)}
PAPER = FARE_INDEX["Ticket papier"]
FARE_MIX = {
    WORKER: {"Abonnement mensuel": 0.75, "Abonnement annuel": 0.10, "Ticket unité": 0.15},
    STUDENT: {"Abonnement jeune": 0.95, "Ticket unité": 0.05},
    OCCASIONAL: {
        "Ticket unité": 0.35,
        "Carnet 10 voyages": 0.24,
        "Abonnement senior": 0.15,
        "Tarif solidaire": 0.10,
        "Pass 24h": 0.10,
        "Ticket papier": 0.06,
    },
}


def _decay(d: np.ndarray) -> np.ndarray:
    """Weight of riding d stops: most rides are 3-15 stops long (assumption)."""
    d = np.maximum(np.asarray(d, dtype=float), 0.0)
    return d**1.5 * np.exp(-d / 5.0)


@dataclass
class DemandModel:
    """Sampling tables of one base network, built once."""

    net: BaseNetwork
    params: Params
    pattern_weight: np.ndarray
    home_w: np.ndarray
    attr_w: np.ndarray
    opposite: np.ndarray
    near_pos: np.ndarray  # [pattern, stop] -> position within return_walk_m, or -1
    transfers: np.ndarray  # rows (p, j, p2, k)
    transfer_weight: np.ndarray
    starts: np.ndarray  # rows (stop, p, i): rides starting within walking distance of a stop
    starts_ptr: np.ndarray

    @classmethod
    def build(cls, net: BaseNetwork, params: Params, seed: int) -> DemandModel:
        rng = np.random.default_rng([seed, 7])
        weekday = net.template_for(0) or next(t for t in net.templates.values() if t)
        trips = net.trips_on_template(weekday)
        n_pat = len(net.pattern_stops)
        trips_per_pattern = np.bincount(net.trip_pattern[trips], minlength=n_pat).astype(float)
        lengths = np.array([len(s) for s in net.pattern_stops])
        pattern_weight = trips_per_pattern * (lengths - 1)

        # Stop weights: service intensity with a random local factor (assumption).
        rows = np.concatenate([np.arange(net.trip_ptr[t], net.trip_ptr[t + 1]) for t in trips])
        freq = np.bincount(net.st_stop[rows], minlength=net.n_stops).astype(float) + 1
        home_w = freq**0.5 * rng.lognormal(0, 0.6, net.n_stops)
        attr_w = freq**1.0 * rng.lognormal(0, 0.8, net.n_stops)

        # Opposite direction: the busiest pattern of the same route in the other direction.
        opposite = np.full(n_pat, -1)
        for p in range(n_pat):
            cand = np.flatnonzero((net.pattern_route == net.pattern_route[p]) & (net.pattern_dir != net.pattern_dir[p]))
            if len(cand):
                opposite[p] = cand[np.argmax(trips_per_pattern[cand])]

        lat, lon = net.stop_lat, net.stop_lon
        near_pos = np.full((n_pat, net.n_stops), -1, dtype=np.int64)
        for p, stops in enumerate(net.pattern_stops):
            d = haversine_m(lat[:, None], lon[:, None], lat[stops][None, :], lon[stops][None, :])
            best = np.argmin(d, axis=1)
            ok = d[np.arange(net.n_stops), best] <= params.return_walk_m
            near_pos[p, ok] = best[ok]

        # Every (pattern, position) as a flat list, to pair transfer points and ride starts.
        pos_p = np.concatenate([np.full(len(s), p) for p, s in enumerate(net.pattern_stops)])
        pos_i = np.concatenate([np.arange(len(s)) for s in net.pattern_stops])
        pos_s = np.concatenate(net.pattern_stops)
        pos_len = lengths[pos_p]
        active = trips_per_pattern[pos_p] > 0

        # Transfers: alight at (p, j>0), walk <= transfer_walk_m, board (p2, k < last), other route.
        a = np.flatnonzero(active & (pos_i > 0))
        b = np.flatnonzero(active & (pos_i < pos_len - 1))
        pairs = []
        for chunk in np.array_split(a, max(1, len(a) // 500)):
            d = haversine_m(
                lat[pos_s[chunk]][:, None], lon[pos_s[chunk]][:, None], lat[pos_s[b]][None, :], lon[pos_s[b]][None, :]
            )
            ia, ib = np.nonzero(d <= params.transfer_walk_m)
            keep = net.pattern_route[pos_p[chunk[ia]]] != net.pattern_route[pos_p[b[ib]]]
            pairs.append(np.stack([chunk[ia][keep], b[ib][keep]], axis=1))
        pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
        transfers = np.stack([pos_p[pairs[:, 0]], pos_i[pairs[:, 0]], pos_p[pairs[:, 1]], pos_i[pairs[:, 1]]], axis=1)
        before = (
            np.array([_before_mass(net, home_w, p, j) for p, j in transfers[:, :2]]) if len(transfers) else np.zeros(0)
        )
        after = (
            np.array([_after_mass(net, attr_w, p, k) for p, k in transfers[:, 2:]]) if len(transfers) else np.zeros(0)
        )
        transfer_weight = (
            before * after * np.sqrt(trips_per_pattern[transfers[:, 0]] * trips_per_pattern[transfers[:, 2]])
            if len(transfers)
            else np.zeros(0)
        )

        # Ride starts near each stop (for midday trips from the activity place).
        c = np.flatnonzero(active & (pos_i < pos_len - 1))
        d = haversine_m(lat[:, None], lon[:, None], lat[pos_s[c]][None, :], lon[pos_s[c]][None, :])
        si, ci = np.nonzero(d <= params.transfer_walk_m)
        order = np.argsort(si, kind="stable")
        starts = np.stack([si[order], pos_p[c[ci[order]]], pos_i[c[ci[order]]]], axis=1)
        starts_ptr = np.searchsorted(starts[:, 0], np.arange(net.n_stops + 1))
        return cls(
            net,
            params,
            pattern_weight,
            home_w,
            attr_w,
            opposite,
            near_pos,
            transfers,
            transfer_weight,
            starts,
            starts_ptr,
        )

    # -- sampling ------------------------------------------------------------------------
    def _stops(self, p: int) -> np.ndarray:
        return self.net.pattern_stops[p]

    def sample_direct(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return n rides (p, i, j) drawn by pattern weight and stop weights."""
        p = rng.choice(len(self.pattern_weight), size=n, p=self.pattern_weight / self.pattern_weight.sum())
        i = np.zeros(n, dtype=np.int64)
        j = np.zeros(n, dtype=np.int64)
        for q in np.unique(p):
            sel = np.flatnonzero(p == q)
            s = self._stops(q)
            L = len(s)
            ii, jj = np.triu_indices(L, k=1)
            w = self.home_w[s[ii]] * self.attr_w[s[jj]] * _decay(jj - ii)
            cum = np.cumsum(w)
            k = np.searchsorted(cum, rng.random(len(sel)) * cum[-1], side="right").clip(0, len(w) - 1)
            i[sel], j[sel] = ii[k], jj[k]
        return p, i, j

    def sample_transfer(self, rng: np.random.Generator, n: int):
        """Return n two-ride journeys (p, i, j, p2, k, l) through a transfer point."""
        w = self.transfer_weight
        rows = self.transfers[rng.choice(len(w), size=n, p=w / w.sum())]
        p, j, p2, k = rows.T
        i = np.zeros(n, dtype=np.int64)
        l_ = np.zeros(n, dtype=np.int64)
        for q in np.unique(p):
            sel = np.flatnonzero(p == q)
            i[sel] = self._draw_before(rng, q, j[sel])
        for q in np.unique(p2):
            sel = np.flatnonzero(p2 == q)
            l_[sel] = self._draw_after(rng, q, k[sel])
        return p, i, j, p2, k, l_

    def sample_from_stops(self, rng: np.random.Generator, stops: np.ndarray):
        """Return rides starting within walking distance of each stop (p=-1 where none)."""
        n = len(stops)
        p = np.full(n, -1)
        i = np.zeros(n, dtype=np.int64)
        j = np.zeros(n, dtype=np.int64)
        lo, hi = self.starts_ptr[stops], self.starts_ptr[stops + 1]
        has = hi > lo
        pick = lo[has] + (rng.random(has.sum()) * (hi[has] - lo[has])).astype(np.int64)
        p[has], i[has] = self.starts[pick, 1], self.starts[pick, 2]
        for q in np.unique(p[has]):
            sel = np.flatnonzero(p == q)
            j[sel] = self._draw_after(rng, q, i[sel])
        return p, i, j

    def _draw_before(self, rng, p: int, j: np.ndarray) -> np.ndarray:
        s = self._stops(p)
        L = len(s)
        jj, ii = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        w = np.where(ii < jj, self.home_w[s][None, :] * _decay(jj - ii), 0.0)  # [j, i]
        return _draw_rows(rng, w, j)

    def _draw_after(self, rng, p: int, k: np.ndarray) -> np.ndarray:
        s = self._stops(p)
        L = len(s)
        kk, ll = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        w = np.where(ll > kk, self.attr_w[s][None, :] * _decay(ll - kk), 0.0)  # [k, l]
        return _draw_rows(rng, w, k)

    def returns(self, p, i, j) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the ride back (q, a, b) for rides (p, i, j); q=-1 where there is none."""
        q = self.opposite[p]
        s_i, s_j = self.stop_at(p, i), self.stop_at(p, j)
        ok = (q >= 0) & (p >= 0)
        a = np.full(len(p), -1)
        b = np.full(len(p), -1)
        a[ok] = self.near_pos[q[ok], s_j[ok]]
        b[ok] = self.near_pos[q[ok], s_i[ok]]
        ok &= (a >= 0) & (b >= 0) & (a < b)
        return np.where(ok, q, -1), a, b

    def stop_at(self, p: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Return the base stop index at (pattern, position)."""
        out = np.zeros(len(p), dtype=np.int64)
        for q in np.unique(p[p >= 0]):
            sel = p == q
            stops = self._stops(q)
            out[sel] = stops[np.clip(pos[sel], 0, len(stops) - 1)]  # callers mask invalid rows
        return out


def _before_mass(net: BaseNetwork, home_w: np.ndarray, p: int, j: int) -> float:
    s = net.pattern_stops[p]
    i = np.arange(j)
    return float((home_w[s[i]] * _decay(j - i)).sum())


def _after_mass(net: BaseNetwork, attr_w: np.ndarray, p: int, k: int) -> float:
    s = net.pattern_stops[p]
    ll = np.arange(k + 1, len(s))
    return float((attr_w[s[ll]] * _decay(ll - k)).sum())


def _draw_rows(rng: np.random.Generator, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one column per requested row of a weight matrix."""
    cum = np.cumsum(w, axis=1)
    total = cum[rows, -1]
    u = rng.random(len(rows)) * total
    return (cum[rows] <= u[:, None]).sum(axis=1).clip(0, w.shape[1] - 1)


def _unique_serials(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return n distinct 12-digit card serials."""
    card = rng.integers(10**11, 10**12, size=n, dtype=np.int64)
    while True:
        _, first = np.unique(card, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if not len(dup):
            return card
        card[dup] = rng.integers(10**11, 10**12, size=len(dup), dtype=np.int64)


@dataclass
class Population:
    """Persistent riders of all tiles (arrays of equal length)."""

    tile: np.ndarray
    rtype: np.ndarray
    card: np.ndarray  # int64 card serial (0 for riders who never validate)
    fraud: np.ndarray
    fare: np.ndarray
    # outbound: ride 1 (p1, i1, j1) then optional ride 2 (p2, k2, l2) with p2 = -1 when direct
    p1: np.ndarray
    i1: np.ndarray
    j1: np.ndarray
    p2: np.ndarray
    k2: np.ndarray
    l2: np.ndarray
    # return: ride 1 (rp1, ri1, rj1), optional ride 2 (rp2, rk2, rl2); rp1 = -1 when impossible
    rp1: np.ndarray
    ri1: np.ndarray
    rj1: np.ndarray
    rp2: np.ndarray
    rk2: np.ndarray
    rl2: np.ndarray
    depart_s: np.ndarray
    stay_s: np.ndarray

    def __len__(self) -> int:
        return len(self.tile)


def build_population(model: DemandModel, tiles: int, per_tile: int, seed: int) -> Population:
    """Draw ``per_tile`` riders in each tile with their plans."""
    params = model.params
    rng = np.random.default_rng([seed, 11])
    n = per_tile * tiles
    tile = np.repeat(np.arange(tiles), per_tile)
    u = rng.random(n)
    rtype = np.where(
        u < params.share_workers,
        WORKER,
        np.where(u < params.share_workers + params.share_students, STUDENT, OCCASIONAL),
    )
    fare = np.zeros(n, dtype=np.int64)
    for t, mix in FARE_MIX.items():
        sel = np.flatnonzero(rtype == t)
        names = list(mix)
        probs = np.array([mix[k] for k in names])
        if t == OCCASIONAL:
            probs = probs.copy()
            probs[names.index("Ticket papier")] = params.paper_ticket_share
        fare[sel] = np.array([FARE_INDEX[k] for k in names])[
            rng.choice(len(names), size=len(sel), p=probs / probs.sum())
        ]
    fraud = rng.random(n) < params.fraud_share
    card = _unique_serials(rng, n)
    card[fraud | (fare == PAPER)] = 0

    transfer = rng.random(n) < params.transfer_share
    if len(model.transfer_weight) == 0:
        transfer[:] = False
    p1, i1, j1 = model.sample_direct(rng, n)
    p2 = np.full(n, -1)
    k2 = np.zeros(n, dtype=np.int64)
    l2 = np.zeros(n, dtype=np.int64)
    nt = int(transfer.sum())
    if nt:
        tp, ti, tj, tp2, tk, tl = model.sample_transfer(rng, nt)
        p1[transfer], i1[transfer], j1[transfer] = tp, ti, tj
        p2[transfer], k2[transfer], l2[transfer] = tp2, tk, tl

    # Returns: direct riders reverse their ride; transfer riders reverse both rides.
    rp1, ri1, rj1 = model.returns(p1, i1, j1)
    rp2 = np.full(n, -1)
    rk2 = np.zeros(n, dtype=np.int64)
    rl2 = np.zeros(n, dtype=np.int64)
    if nt:
        t_idx = np.flatnonzero(transfer)
        q2, a2, b2 = model.returns(p2[t_idx], k2[t_idx], l2[t_idx])  # back along the second route
        q1, a1, b1 = rp1[t_idx], ri1[t_idx], rj1[t_idx]  # then back along the first
        ok = (q2 >= 0) & (q1 >= 0)
        # the walk between the two return rides must stay a transfer
        s_end = model.stop_at(np.where(ok, q2, 0), np.where(ok, b2, 0))
        s_start = model.stop_at(np.where(ok, q1, 0), np.where(ok, a1, 0))
        walk = haversine_m(
            model.net.stop_lat[s_end],
            model.net.stop_lon[s_end],
            model.net.stop_lat[s_start],
            model.net.stop_lon[s_start],
        )
        ok &= walk <= params.transfer_walk_m
        rp1[t_idx] = np.where(ok, q2, -1)
        ri1[t_idx], rj1[t_idx] = a2, b2
        rp2[t_idx] = np.where(ok, q1, -1)
        rk2[t_idx], rl2[t_idx] = a1, b1

    depart = np.where(
        rtype == WORKER,
        rng.normal(7.9 * 3600, 70 * 60, n).clip(5 * 3600, 11 * 3600),
        np.where(
            rtype == STUDENT,
            rng.normal(7.5 * 3600, 25 * 60, n).clip(6.25 * 3600, 9.5 * 3600),
            rng.uniform(9 * 3600, 16.5 * 3600, n),
        ),
    )
    stay = np.where(
        rtype == OCCASIONAL,
        rng.uniform(0.75 * 3600, 3 * 3600, n),
        rng.normal(8.5 * 3600, 80 * 60, n).clip(4 * 3600, 11 * 3600),
    )
    return Population(
        tile,
        rtype,
        card,
        fraud,
        fare,
        p1,
        i1,
        j1,
        p2,
        k2,
        l2,
        rp1,
        ri1,
        rj1,
        rp2,
        rk2,
        rl2,
        depart.astype(np.int64),
        stay.astype(np.int64),
    )
