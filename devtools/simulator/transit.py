"""One service day of the bus network: vehicles, actual times, riders, loads, validations, counts.

Times are integer seconds from the service day's start (GTFS: local noon minus 12 h), so a
service day runs past midnight naturally. Every array is vectorised over all tiles; a *row* is
one scheduled stop visit of one trip of the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from citylake.core.calendar_fr import DayInfo
from devtools.simulator.demand import FARES, OCCASIONAL, STUDENT, WORKER, DemandModel, Population
from devtools.simulator.fleet import Fleet, block_classes, route_classes
from devtools.simulator.network import BaseNetwork, haversine_m
from devtools.simulator.params import Params

TIME_BITS = 18  # times < 2**18 s (72 h)
CANCEL_CAUSES = ("Manque de véhicule", "Absence de personnel", "Aléa externe")
CAUSE_CLASS = {"Manque de véhicule": "interne", "Absence de personnel": "interne", "Aléa externe": "externe"}


def _group_cumsum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = np.cumsum(values)
    return c - np.repeat(c[starts] - values[starts], counts)


@dataclass
class DayService:
    """The trips of one day and what actually ran."""

    day: date
    info: DayInfo
    trip_base: np.ndarray
    trip_tile: np.ndarray
    trip_block: np.ndarray
    trip_pattern: np.ndarray  # global pattern (tile * n_patterns + p)
    trip_start: np.ndarray
    trip_count: np.ndarray
    trip_vehicle: np.ndarray  # -1 when cancelled for lack of vehicle
    trip_cancel: np.ndarray  # index in CANCEL_CAUSES, -1 when run
    trip_detoured: np.ndarray
    row_trip: np.ndarray
    row_pos: np.ndarray
    row_base: np.ndarray
    served: np.ndarray
    sched_arr: np.ndarray
    sched_dep: np.ndarray
    arr: np.ndarray
    dep: np.ndarray
    odometer: np.ndarray
    vehicle_km: np.ndarray  # per fleet vehicle

    @property
    def n_rows(self) -> int:
        return len(self.row_trip)


def run_service(
    net: BaseNetwork,
    fleet: Fleet,
    info: DayInfo,
    template,
    tiles: int,
    params: Params,
    rng: np.random.Generator,
    tz: str,
    block_cache: dict,
    event_rng: np.random.Generator | None = None,
) -> DayService:
    """Return the day's service: vehicles on blocks, cancellations, detours, actual times.

    With ``event_rng``, external losses come from disruptions (:func:`external_events`): the
    other trips of the line around a lost one run late, as in real life; without it, from a
    uniform draw (the simulator before issue #33)."""
    bt = net.trips_on_template(template)
    if template not in block_cache:
        blocks = net.blocks(bt)
        block_cache[template] = (blocks, block_classes(net, bt, blocks, route_classes(net)))
    blocks, bclass = block_cache[template]
    nb, n_blocks, n_pat = len(bt), (blocks.max() + 1 if len(bt) else 0), len(net.pattern_stops)
    trip_base = np.tile(bt, tiles)
    trip_tile = np.repeat(np.arange(tiles), nb)
    trip_block = np.tile(blocks, tiles) + trip_tile * n_blocks
    counts = (net.trip_ptr[trip_base + 1] - net.trip_ptr[trip_base]).astype(np.int64)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    n_trips, n_rows = len(trip_base), int(counts.sum())
    row_trip = np.repeat(np.arange(n_trips), counts)
    row_pos = np.arange(n_rows) - starts[row_trip]
    row_base = net.trip_ptr[trip_base][row_trip] + row_pos

    # Vehicles to blocks, per tile and class; blocks left without a vehicle are not run.
    available = fleet.available(info.day, tz)
    block_vehicle = np.full(tiles * n_blocks, -1)
    block_tile = np.repeat(np.arange(tiles), n_blocks)
    block_cls = np.tile(bclass, tiles)
    used = np.zeros(tiles * n_blocks, dtype=bool)
    used[trip_block] = True
    for k in range(tiles):
        for c in np.unique(bclass):
            want = np.flatnonzero(used & (block_tile == k) & (block_cls == c))
            have = rng.permutation(np.flatnonzero(available & (fleet.tile == k) & (fleet.vclass == c)))
            m = min(len(want), len(have))
            block_vehicle[want[:m]] = have[:m]
    trip_vehicle = block_vehicle[trip_block]
    trip_cancel = np.full(n_trips, -1)
    trip_cancel[trip_vehicle < 0] = 0
    u = rng.random(n_trips)
    trip_cancel[(trip_cancel < 0) & (u < params.cancel_share * 0.8)] = 1
    event_delay = np.zeros(n_trips)
    if event_rng is None:
        trip_cancel[(trip_cancel < 0) & (u > 1 - params.cancel_share * 0.2)] = 2
    else:
        route = net.trip_route[trip_base] + trip_tile * (int(net.trip_route.max()) + 1)
        event_delay, event_lost = external_events(route, net.st_dep[net.trip_ptr[trip_base]], params, event_rng)
        trip_cancel[(trip_cancel < 0) & event_lost] = 2

    served = np.ones(n_rows, dtype=bool)
    served[trip_cancel[row_trip] >= 0] = False
    detoured = (trip_cancel < 0) & (counts >= 8) & (rng.random(n_trips) < params.detour_share)
    for t in np.flatnonzero(detoured):
        m = int(rng.integers(2, 5))
        a = int(rng.integers(1, counts[t] - 1 - m))
        served[starts[t] + a : starts[t] + a + m] = False

    # Actual times: a start delay, then for each segment a running time (the scheduled one less
    # the dwell the timetable already counts, times a lognormal factor, slower at peak, never
    # under 15 s) and a dwell at each stop, accumulated along the trip.
    sched_arr = net.st_arr[row_base]
    sched_dep = net.st_dep[row_base]
    hour = (sched_arr // 3600) % 24
    peak = ((hour >= 7) & (hour < 9)) | ((hour >= 16) & (hour < 19))
    scheduled_run = np.zeros(n_rows)
    scheduled_run[1:] = sched_arr[1:] - sched_dep[:-1]
    scheduled_run[row_pos == 0] = 0.0
    lo, hi = params.dwell_s
    dwell = rng.integers(lo, hi, n_rows).astype(float)
    factor = np.exp(rng.normal(np.where(peak, np.log(1.0 + params.peak_running_slowdown), 0.0), params.running_time_sd))
    run = np.maximum(15.0, np.maximum(0.6 * scheduled_run, scheduled_run - (lo + hi) / 2) * factor.clip(0.8, 1.8))
    run[row_pos == 0] = 0.0
    d0 = rng.normal(params.start_delay_mean_s, params.start_delay_sd_s, n_trips).clip(-30, None) + event_delay
    first_arr = sched_arr[starts] + d0
    travelled = _group_cumsum(run, starts, counts) + _group_cumsum(dwell, starts, counts) - dwell
    arr = np.round(first_arr[row_trip] + travelled).astype(np.int64)
    dep = arr + dwell.astype(np.int64)

    # Odometer: each vehicle's trips in time order, 2 km dead running between trips.
    trip_km = np.where(trip_cancel < 0, net.st_km[net.trip_ptr[trip_base + 1] - 1], 0.0)
    order = np.lexsort((sched_dep[starts], trip_vehicle))
    km_before = np.zeros(n_trips)
    veh_sorted = trip_vehicle[order]
    km_sorted = trip_km[order] + np.where(trip_km[order] > 0, 2.0, 0.0)
    cum = np.cumsum(km_sorted)
    first = np.r_[True, veh_sorted[1:] != veh_sorted[:-1]]
    group_start_cum = np.maximum.accumulate(np.where(first, cum - km_sorted, 0))
    km_before[order] = cum - km_sorted - group_start_cum
    vehicle_km = np.zeros(len(fleet))
    ok = trip_vehicle >= 0
    np.add.at(vehicle_km, trip_vehicle[ok], trip_km[ok] + 2.0)
    vehicle_km[vehicle_km > 0] += 6.0  # pull-out and pull-in
    base_odo = np.where(trip_vehicle >= 0, fleet.odometer[np.maximum(trip_vehicle, 0)], 0.0)
    odometer = base_odo[row_trip] + 3.0 + km_before[row_trip] + net.st_km[row_base]

    return DayService(
        day=info.day,
        info=info,
        trip_base=trip_base,
        trip_tile=trip_tile,
        trip_block=trip_block,
        trip_pattern=net.trip_pattern[trip_base] + trip_tile * n_pat,
        trip_start=starts,
        trip_count=counts,
        trip_vehicle=trip_vehicle,
        trip_cancel=trip_cancel,
        trip_detoured=detoured,
        row_trip=row_trip,
        row_pos=row_pos,
        row_base=row_base,
        served=served,
        sched_arr=sched_arr,
        sched_dep=sched_dep,
        arr=arr,
        dep=dep,
        odometer=odometer.round(1),
        vehicle_km=vehicle_km,
    )


@dataclass
class Stages:
    """Every ride (stage) riders wanted to make on the day, and what they got."""

    rider: np.ndarray
    slot: np.ndarray
    journey: np.ndarray
    leg: np.ndarray
    pattern: np.ndarray  # global pattern
    bpos: np.ndarray
    apos: np.ndarray
    desired: np.ndarray
    gap: np.ndarray
    board_row: np.ndarray
    alight_row: np.ndarray
    status: np.ndarray  # 0 pending, 1 riding, 2 dropped (no trip: left the network)
    forced: np.ndarray
    prev: np.ndarray


def plan_stages(
    model: DemandModel, pop: Population, svc: DayService, params: Params, rng: np.random.Generator
) -> Stages:
    """Return the stages of everyone travelling today, in (rider, slot) order."""
    info = svc.info
    label = info.label
    n_pat = len(model.net.pattern_stops)
    runs = np.bincount(svc.trip_pattern[svc.trip_cancel < 0], minlength=n_pat * (pop.tile.max() + 1)) > 0
    prob = np.zeros(len(pop))
    for t, name in ((WORKER, "worker"), (STUDENT, "student"), (OCCASIONAL, "occasional")):
        prob[pop.rtype == t] = params.travel_prob[name][label]
    g1 = pop.p1 + pop.tile * n_pat
    travels = (rng.random(len(pop)) < prob) & runs[g1]
    travels &= (pop.p2 < 0) | runs[np.where(pop.p2 >= 0, pop.p2, 0) + pop.tile * n_pat]
    idx = np.flatnonzero(travels)
    tile = pop.tile[idx]
    rtype = pop.rtype[idx]
    n = len(idx)
    weekend = info.day_type != "weekday"
    jitter = rng.normal(0, 8 * 60, n)
    depart = np.where(rtype == OCCASIONAL, rng.uniform(9 * 3600, 16.5 * 3600, n), pop.depart_s[idx] + jitter)
    if weekend:
        depart = np.where(rtype == OCCASIONAL, depart, rng.normal(9.5 * 3600, 90 * 60, n).clip(7 * 3600, 14 * 3600))
    stay = pop.stay_s[idx].astype(float)
    if info.day.weekday() == 2:  # French Wednesday: school ends at noon
        stay = np.where(rtype == STUDENT, rng.normal(4.5 * 3600, 20 * 60, n), stay)
    if weekend:
        stay = np.where(rtype == OCCASIONAL, stay, rng.uniform(1.5 * 3600, 5 * 3600, n))

    lat, lon = model.net.stop_lat, model.net.stop_lon
    parts = []

    def add(mask, slot, journey, leg, p, b, a, desired, gap):
        sel = np.flatnonzero(mask)
        parts.append(
            (
                idx[sel],
                np.full(len(sel), slot),
                np.full(len(sel), journey),
                np.full(len(sel), leg),
                p[sel] + tile[sel] * n_pat,
                b[sel],
                a[sel],
                np.asarray(desired)[sel] if np.ndim(desired) else np.full(len(sel), desired),
                np.asarray(gap)[sel] if np.ndim(gap) else np.full(len(sel), gap),
            )
        )

    def walk_s(p_from, pos_from, p_to, pos_to):
        s1 = model.stop_at(p_from, pos_from)
        s2 = model.stop_at(p_to, pos_to)
        return (haversine_m(lat[s1], lon[s1], lat[s2], lon[s2]) / params.walk_speed_mps + 60).astype(np.int64)

    p1, i1, j1 = pop.p1[idx], pop.i1[idx], pop.j1[idx]
    p2, k2, l2 = pop.p2[idx], pop.k2[idx], pop.l2[idx]
    two = p2 >= 0
    add(np.ones(n, bool), 0, 0, 0, p1, i1, j1, depart, 0)
    add(two, 1, 0, 1, p2, k2, l2, 0, walk_s(p1, j1, np.where(two, p2, p1), np.where(two, k2, j1)))

    # Midday round trip for some workers on weekdays, from where they got off.
    last_p, last_pos = np.where(two, p2, p1), np.where(two, l2, j1)
    midday = (rtype == WORKER) & (info.day_type == "weekday") & (rng.random(n) < params.midday_share)
    mp, mi, mj = model.sample_from_stops(rng, model.stop_at(last_p, last_pos))
    ok_m = midday & (mp >= 0)
    mq, ma, mb = model.returns(np.where(ok_m, mp, -1), mi, mj)
    ok_m &= mq >= 0
    ok_m &= runs[np.where(ok_m, mp, 0) + tile * n_pat] & runs[np.where(ok_m, mq, 0) + tile * n_pat]
    lunch = rng.normal(12 * 3600, 20 * 60, n)
    add(ok_m, 2, 1, 0, np.where(ok_m, mp, 0), np.where(ok_m, mi, 0), np.where(ok_m, mj, 1), lunch, 300)
    add(
        ok_m,
        3,
        2,
        0,
        np.where(ok_m, mq, 0),
        np.where(ok_m, ma, 0),
        np.where(ok_m, mb, 1),
        0,
        rng.normal(45 * 60, 10 * 60, n).clip(15 * 60, None).astype(np.int64),
    )

    # The way back (unless a one-way day or no return on the network).
    rp1, ri1, rj1 = pop.rp1[idx], pop.ri1[idx], pop.rj1[idx]
    rp2, rk2, rl2 = pop.rp2[idx], pop.rk2[idx], pop.rl2[idx]
    back = (rp1 >= 0) & (rng.random(n) >= params.one_way_share)
    back &= runs[np.where(back, rp1, 0) + tile * n_pat]
    rtwo = back & (rp2 >= 0)
    back &= ~(rp2 >= 0) | runs[np.where(rp2 >= 0, rp2, 0) + tile * n_pat]
    rtwo &= back
    add(back, 4, 3, 0, np.where(back, rp1, 0), ri1, rj1, depart + stay, 300)
    add(
        rtwo,
        5,
        3,
        1,
        np.where(rtwo, rp2, 0),
        rk2,
        rl2,
        0,
        walk_s(np.where(rtwo, rp1, 0), rj1, np.where(rtwo, rp2, 0), np.where(rtwo, rk2, 0)),
    )

    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.lexsort((cols[1], cols[0]))
    rider, slot, journey, leg, pattern, bpos, apos, desired, gap = (c[order] for c in cols)
    m = len(rider)
    prev = np.arange(m) - 1
    prev[np.r_[True, rider[1:] != rider[:-1]][:m]] = -1
    return Stages(
        rider,
        slot,
        journey,
        leg,
        pattern,
        bpos,
        apos,
        desired.astype(np.int64),
        gap.astype(np.int64),
        np.full(m, -1),
        np.full(m, -1),
        np.zeros(m, dtype=np.int8),
        np.zeros(m, dtype=np.int64),
        prev,
    )


class Boarding:
    """Finds the first bus of a pattern leaving a position at or after a time (served stops only)."""

    def __init__(self, svc: DayService, max_pos: int) -> None:
        ok = svc.served
        rows = np.flatnonzero(ok)
        self.mult = max_pos
        group = svc.trip_pattern[svc.row_trip[rows]].astype(np.int64) * max_pos + svc.row_pos[rows]
        keys = (group << TIME_BITS) | np.clip(svc.dep[rows], 0, 2**TIME_BITS - 1)
        order = np.argsort(keys, kind="stable")
        self.keys, self.rows = keys[order], rows[order]
        # next served row of the same trip, at or after each row
        n = svc.n_rows
        val = np.where(ok, np.arange(n), n)
        nxt = np.minimum.accumulate(val[::-1])[::-1]
        nxt_trip = np.where(nxt < n, svc.row_trip[np.minimum(nxt, n - 1)], -1)
        self.next_served = np.where(nxt_trip == svc.row_trip, nxt, -1)

    def find(self, pattern: np.ndarray, pos: np.ndarray, earliest: np.ndarray) -> np.ndarray:
        group = pattern.astype(np.int64) * self.mult + pos
        q = (group << TIME_BITS) | np.clip(earliest, 0, 2**TIME_BITS - 1)
        i = np.searchsorted(self.keys, q, side="left")
        inside = i < len(self.keys)
        i = np.minimum(i, len(self.keys) - 1)
        hit = inside & ((self.keys[i] >> TIME_BITS) == group)
        return np.where(hit, self.rows[i], -1)


def assign(st: Stages, svc: DayService, board: Boarding, pending: np.ndarray) -> None:
    """Place pending stages on trips, slot by slot, each after the rider's previous stage."""
    for slot in np.unique(st.slot[pending]):
        sel = np.flatnonzero(pending & (st.slot == slot))
        prev = st.prev[sel]
        has_prev = prev >= 0
        prev_status = np.where(has_prev, st.status[np.maximum(prev, 0)], 1)
        dropped = prev_status != 1
        st.status[sel[dropped]] = 2
        sel, prev, has_prev = sel[~dropped], prev[~dropped], has_prev[~dropped]
        after_prev = np.where(has_prev, svc.arr[np.maximum(st.alight_row[np.maximum(prev, 0)], 0)] + st.gap[sel], 0)
        earliest = np.maximum(np.maximum(st.desired[sel], after_prev), st.forced[sel])
        row = board.find(st.pattern[sel], st.bpos[sel], earliest)
        found = row >= 0
        trip = svc.row_trip[np.maximum(row, 0)]
        alight = board.next_served[svc.trip_start[trip] + st.apos[sel]]
        alight = np.where(alight >= 0, alight, svc.trip_start[trip] + svc.trip_count[trip] - 1)
        found &= alight > row
        st.board_row[sel] = np.where(found, row, -1)
        st.alight_row[sel] = np.where(found, alight, -1)
        st.status[sel] = np.where(found, 1, 2)


def enforce_capacity(
    st: Stages,
    svc: DayService,
    board: Boarding,
    capacity_row: np.ndarray,
    rng: np.random.Generator,
    max_rounds: int = 500,
) -> int:
    """Bump riders who cannot fit to the next bus until no trip exceeds its vehicle.

    Return how many stages were denied boarding at least once."""
    n = svc.n_rows
    denied = np.zeros(len(st.rider), dtype=bool)
    u = rng.random(len(st.rider))
    for _ in range(max_rounds):
        ok = st.status == 1
        delta = np.bincount(st.board_row[ok], minlength=n) - np.bincount(st.alight_row[ok], minlength=n)
        load = _group_cumsum(delta, svc.trip_start, svc.trip_count)
        over = np.flatnonzero(load > capacity_row)
        if not len(over):
            return int(denied.sum())
        trips = svc.row_trip[over]
        first = over[np.r_[True, trips[1:] != trips[:-1]]]
        excess = np.zeros(n, dtype=np.int64)
        excess[first] = load[first] - capacity_row[first]
        cand = np.flatnonzero(ok & (excess[np.maximum(st.board_row, 0)] > 0))
        order = np.lexsort((u[cand], st.board_row[cand]))
        cand = cand[order]
        rows = st.board_row[cand]
        group_start = np.r_[True, rows[1:] != rows[:-1]]
        rank = np.arange(len(cand)) - np.maximum.accumulate(np.where(group_start, np.arange(len(cand)), 0))
        bumped = cand[rank < excess[rows]]
        denied[bumped] = True
        st.forced[bumped] = svc.dep[st.board_row[bumped]] + 1
        # the bumped stage and every later stage of the same riders are placed again
        first_slot = np.full(st.rider.max() + 1, 99)
        np.minimum.at(first_slot, st.rider[bumped], st.slot[bumped])
        pending = st.slot >= first_slot[st.rider]
        st.status[pending] = 0
        st.board_row[pending] = -1
        st.alight_row[pending] = -1
        assign(st, svc, board, pending)
    # Could not settle: riders still over capacity give up (counted as dropped).
    ok = st.status == 1
    delta = np.bincount(st.board_row[ok], minlength=n) - np.bincount(st.alight_row[ok], minlength=n)
    load = _group_cumsum(delta, svc.trip_start, svc.trip_count)
    bad = ok & (load[np.maximum(st.board_row, 0)] > capacity_row[np.maximum(st.board_row, 0)])
    st.status[bad] = 2
    return int(denied.sum())


def is_pass(fare: np.ndarray) -> np.ndarray:
    return np.array([f[2] for f in FARES])[fare]


def riders_travel(
    model: DemandModel, pop: Population, svc: DayService, fleet: Fleet, params: Params, rng: np.random.Generator
) -> tuple[Stages, dict]:
    """Plan, place and settle the day's riders; return the stages and a few counters."""
    st = plan_stages(model, pop, svc, params, rng)
    max_pos = int(svc.trip_count.max()) + 1 if len(svc.trip_count) else 1
    board = Boarding(svc, max_pos)
    assign(st, svc, board, np.ones(len(st.rider), dtype=bool))
    capacity_row = np.where(svc.trip_vehicle >= 0, fleet.capacity[np.maximum(svc.trip_vehicle, 0)], 0)[svc.row_trip]
    denied = enforce_capacity(st, svc, board, capacity_row, rng)
    return st, {
        "stages_planned": len(st.rider),
        "stages_ridden": int((st.status == 1).sum()),
        "stages_denied_once": denied,
    }


#: external losses per disruption, on average (the one that triggers it, and a share of the
#: line's other trips within it): sizes the number of events to the external losses wanted
_LOSSES_PER_EVENT = 1.6


def external_events(
    route: np.ndarray, scheduled_start: np.ndarray, params: Params, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the day's external disruptions: each starts at a trip of a line (lost) and lasts
    external_event_duration_s; the line's trips starting within it run late by
    external_event_delay_s and a share (external_event_loss_share) of them are lost too.
    Returns each trip's extra start delay (s) and whether an event lost it."""
    n = len(route)
    delay, lost = np.zeros(n), np.zeros(n, dtype=bool)
    events = rng.poisson(n * params.cancel_share * 0.2 / _LOSSES_PER_EVENT) if n else 0
    for _ in range(events):
        trigger = int(rng.integers(n))
        start = scheduled_start[trigger]
        end = start + rng.uniform(*params.external_event_duration_s)
        hit = np.flatnonzero((route == route[trigger]) & (scheduled_start >= start) & (scheduled_start <= end))
        delay[hit] = np.maximum(delay[hit], rng.uniform(*params.external_event_delay_s, len(hit)))
        lost[hit[rng.random(len(hit)) < params.external_event_loss_share]] = True
        lost[trigger] = True
    return delay, lost


def stop_visit_truth(st: Stages, svc: DayService) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return true boardings, alightings and load after each row."""
    ok = st.status == 1
    b = np.bincount(st.board_row[ok], minlength=svc.n_rows)
    a = np.bincount(st.alight_row[ok], minlength=svc.n_rows)
    return b, a, _group_cumsum(b - a, svc.trip_start, svc.trip_count)


def nullable_text(values: np.ndarray, missing: np.ndarray) -> pl.Series:
    """Return a string Series of ``values`` with nulls where ``missing``."""
    return pl.Series(np.asarray(values).astype(str)).set(pl.Series(np.asarray(missing, dtype=bool)), None)


def trips_frame(net: BaseNetwork, svc: DayService, fleet: Fleet, ids) -> pl.DataFrame:
    """Return one row per scheduled trip of the day: what ran, with which vehicle, or why not."""
    cancel = svc.trip_cancel
    last = svc.trip_start + svc.trip_count - 1
    return pl.DataFrame(
        {
            "trip_id": ids.trip(svc.trip_base, svc.trip_tile),
            "route_id": ids.route(net.trip_route[svc.trip_base], svc.trip_tile),
            "direction_id": net.trips["direction_id"].to_numpy()[svc.trip_base],
            "block": svc.trip_block,
            "vehicle_id": nullable_text(
                fleet.register["vehicle_id"].to_numpy()[np.maximum(svc.trip_vehicle, 0)], svc.trip_vehicle < 0
            ),
            "scheduled_start_s": svc.sched_dep[svc.trip_start],
            "scheduled_end_s": svc.sched_arr[last],
            "actual_start_s": pl.Series(svc.dep[svc.trip_start]).set(pl.Series(cancel >= 0), None),
            "actual_end_s": pl.Series(svc.arr[last]).set(pl.Series(cancel >= 0), None),
            "scheduled_km": net.st_km[net.trip_ptr[svc.trip_base + 1] - 1].round(3),
            "is_cancelled": cancel >= 0,
            "cancel_cause": nullable_text(np.array(CANCEL_CAUSES)[np.maximum(cancel, 0)], cancel < 0),
            "is_detoured": svc.trip_detoured,
            "stops_scheduled": svc.trip_count,
            "stops_served": np.bincount(svc.row_trip[svc.served], minlength=len(svc.trip_base)),
        }
    )
