"""The fleet register and its maintenance, carried from day to day.

Vehicles are sized from the network's blocks (peak requirement per vehicle class plus spares).
Each night the day's kilometres are added, failures happen at the mean distance between
failures, preventive jobs fall due on the km plan (some done late) and regulatory inspections
on the calendar; every job is a work order as a CMMS (GMAO) records it, and immobilises the
vehicle until it closes. Immobilised vehicles are not available for the next service day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from citylake.core.calendar_fr import service_day_start
from devtools.simulator.network import BaseNetwork
from devtools.simulator.params import VEHICLE_CLASSES, Params

CLASS_NAMES = list(VEHICLE_CLASSES)
COMPONENTS = (
    ("Freinage", 0.18),
    ("Portes", 0.16),
    ("Moteur / chaîne de traction", 0.14),
    ("Climatisation / chauffage", 0.12),
    ("Électronique embarquée", 0.12),
    ("Pneumatiques", 0.10),
    ("Suspension", 0.08),
    ("Boîte de vitesses", 0.05),
    ("Carrosserie", 0.05),
)


def route_classes(net: BaseNetwork) -> np.ndarray:
    """Return the vehicle class code of each route: by mode, and for buses by weekday trips."""
    weekday = net.template_for(0) or next(t for t in net.templates.values() if t)
    trips = net.trips_on_template(weekday)
    per_route = np.bincount(net.trip_route[trips], minlength=net.routes.height)
    ranks = per_route.argsort().argsort() / max(1, net.routes.height - 1)
    bus = np.where(ranks >= 0.6, "articulated", np.where(ranks < 0.15, "midibus", "standard"))
    by_mode = {0: "tram", 1: "metro", 2: "rail"}
    names = [by_mode.get(int(t), bus[r]) for r, t in enumerate(net.route_type)]
    return np.array([CLASS_NAMES.index(n) for n in names])


def block_classes(net: BaseNetwork, trips: np.ndarray, blocks: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Return the class of each block: the largest its trips' routes need."""
    capacity = np.array([VEHICLE_CLASSES[c].capacity for c in CLASS_NAMES])
    out = np.zeros(blocks.max() + 1 if len(blocks) else 0, dtype=np.int64)
    trip_class = classes[net.trip_route[trips]]
    order = np.argsort(capacity[trip_class], kind="stable")
    out[blocks[order]] = trip_class[order]  # later (larger) writes win
    return out


@dataclass
class WorkOrder:
    ot_id: str
    vehicle: int
    kind: str  # Préventif | Correctif | Contrôle réglementaire
    component: str
    opened_at: datetime
    closed_at: datetime
    odometer_km: float
    due_km: float | None
    due_date: date | None
    labour_hours: float
    parts_cost: float
    immobilising: bool


@dataclass
class Fleet:
    register: pl.DataFrame
    vclass: np.ndarray
    tile: np.ndarray
    capacity: np.ndarray
    apc: np.ndarray
    odometer: np.ndarray
    next_pm_km: np.ndarray
    last_pm_km: np.ndarray
    next_insp: np.ndarray  # date ordinal
    last_insp: np.ndarray
    immobilised_until: np.ndarray  # POSIX seconds
    orders: list[WorkOrder] = field(default_factory=list)
    next_ot: int = 1

    def __len__(self) -> int:
        return len(self.vclass)

    def available(self, day: date, tz: str) -> np.ndarray:
        """Return a mask of vehicles free for the service of ``day`` (not immobilised at 04:00)."""
        start = (service_day_start(day, tz) + timedelta(hours=4)).timestamp()
        return self.immobilised_until <= start

    def immobilised_at(self, instant: datetime) -> np.ndarray:
        return self.immobilised_until > instant.timestamp()


def build_fleet(net: BaseNetwork, tiles: int, start: date, params: Params, seed: int) -> Fleet:
    """Size and draw the fleet of all tiles."""
    rng = np.random.default_rng([seed, 13])
    classes = route_classes(net)
    need = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    for template in {t for t in net.templates.values() if t}:
        trips = net.trips_on_template(template)
        blocks = net.blocks(trips)
        bc = block_classes(net, trips, blocks, classes)
        need = np.maximum(need, np.bincount(bc, minlength=len(CLASS_NAMES)))
    per_tile = np.where(need > 0, np.ceil(need * (1 + params.spare_ratio)).astype(int) + 1, 0)
    vclass = np.tile(np.repeat(np.arange(len(CLASS_NAMES)), per_tile), tiles)
    tile = np.repeat(np.arange(tiles), per_tile.sum())
    n = len(vclass)
    number = np.concatenate([np.arange(1, per_tile.sum() + 1) + 1000 * (k + 1) for k in range(tiles)])
    vehicle_id = np.array([str(x) for x in number])
    age_years = rng.uniform(0.3, 15, n)
    commissioned = [start - timedelta(days=int(a * 365.25)) for a in age_years]
    odometer = (age_years * rng.normal(52_000, 8_000, n)).clip(2_000, None).round(1)
    last_pm = odometer - rng.uniform(0, params.preventive_interval_km, n)
    last_insp = start.toordinal() - rng.integers(0, params.inspection_interval_days, n)
    cls = [VEHICLE_CLASSES[CLASS_NAMES[c]] for c in vclass]
    apc = rng.random(n) < params.apc_share
    register = pl.DataFrame(
        {
            "vehicle_id": vehicle_id,
            "tile": tile,
            "vehicle_class": [c.name for c in cls],
            "model": [c.model for c in cls],
            "seated_capacity": [c.seated for c in cls],
            "standing_capacity": [c.standing for c in cls],
            "commissioned_on": commissioned,
            "odometer_km": odometer,
            "apc_equipped": apc,
        }
    )
    fleet = Fleet(
        register=register,
        vclass=vclass,
        tile=tile,
        capacity=np.array([c.capacity for c in cls]),
        apc=apc,
        odometer=odometer.copy(),
        next_pm_km=np.zeros(n),
        last_pm_km=last_pm,
        next_insp=np.zeros(n, dtype=np.int64),
        last_insp=last_insp.astype(np.int64),
        immobilised_until=np.zeros(n),
    )
    fleet.next_pm_km = _next_due_km(rng, fleet.last_pm_km, params)
    fleet.next_insp = _next_due_day(rng, fleet.last_insp, params)
    return fleet


def _next_due_km(rng, last_km: np.ndarray, params: Params) -> np.ndarray:
    """When the next preventive job will actually happen: mostly within tolerance, some late."""
    tol = params.preventive_tolerance
    late = rng.random(len(last_km)) < params.preventive_late_share
    factor = np.where(
        late,
        rng.uniform(1 + tol * 1.2, 1 + tol * 2.5, len(last_km)),
        rng.uniform(1 - tol * 0.8, 1 + tol * 0.8, len(last_km)),
    )
    return last_km + params.preventive_interval_km * factor


def _next_due_day(rng, last_day: np.ndarray, params: Params) -> np.ndarray:
    late = rng.random(len(last_day)) < 0.08
    offset = np.where(late, rng.integers(8, 30, len(last_day)), rng.integers(-12, 3, len(last_day)))
    return last_day + params.inspection_interval_days + offset


def end_of_day(
    fleet: Fleet, day: date, km: np.ndarray, params: Params, rng: np.random.Generator, tz: str
) -> list[WorkOrder]:
    """Add the day's km, open the night's work orders; return the orders opened."""
    fleet.odometer += km
    base = service_day_start(day, tz)
    opened: list[WorkOrder] = []
    free = fleet.immobilised_until <= (base + timedelta(hours=20)).timestamp()

    def order(
        v: int,
        kind: str,
        component: str,
        at: datetime,
        hours: float,
        due_km=None,
        due_date=None,
        labour=(1.0, 4.0),
        parts=(50.0, 400.0),
    ) -> None:
        at = at.replace(microsecond=0)
        closed = (at + timedelta(hours=hours)).replace(microsecond=0)
        wo = WorkOrder(
            ot_id=f"OT{day:%y%m%d}{fleet.next_ot:06d}",
            vehicle=v,
            kind=kind,
            component=component,
            opened_at=at,
            closed_at=closed,
            odometer_km=round(float(fleet.odometer[v]), 1),
            due_km=due_km,
            due_date=due_date,
            labour_hours=round(float(rng.uniform(*labour)), 1),
            parts_cost=round(float(rng.lognormal(np.log(np.mean(parts)), 0.5)), 2),
            immobilising=True,
        )
        fleet.next_ot += 1
        fleet.immobilised_until[v] = max(fleet.immobilised_until[v], closed.timestamp())
        fleet.orders.append(wo)
        opened.append(wo)

    fail = (km > 0) & (rng.random(len(km)) < 1 - np.exp(-km / params.mean_km_between_failures))
    names, weights = zip(*COMPONENTS, strict=True)
    for v in np.flatnonzero(fail):
        at = base + timedelta(hours=float(rng.uniform(7, 20)))
        hours = float(rng.lognormal(np.log(20), 0.8))
        comp = names[rng.choice(len(names), p=np.array(weights) / sum(weights))]
        order(int(v), "Correctif", comp, at, hours, labour=(1, 12), parts=(80, 1500))
    for v in np.flatnonzero(free & (fleet.odometer >= fleet.next_pm_km)):
        due = float(fleet.last_pm_km[v] + params.preventive_interval_km)
        at = base + timedelta(hours=float(rng.uniform(20.5, 23)))
        order(
            int(v),
            "Préventif",
            "Entretien périodique",
            at,
            float(rng.uniform(8, 18)),
            due_km=round(due, 1),
            labour=(3, 8),
            parts=(150, 900),
        )
        fleet.last_pm_km[v] = fleet.odometer[v]
        fleet.next_pm_km[v] = _next_due_km(rng, fleet.last_pm_km[v : v + 1], params)[0]
    today = day.toordinal()
    for v in np.flatnonzero(free & (fleet.next_insp <= today)):
        due_day = date.fromordinal(int(fleet.last_insp[v] + params.inspection_interval_days))
        at = base + timedelta(hours=float(rng.uniform(20.5, 23)))
        order(
            int(v),
            "Contrôle réglementaire",
            "Contrôle technique",
            at,
            float(rng.uniform(6, 14)),
            due_date=due_day,
            labour=(2, 5),
            parts=(0, 120),
        )
        fleet.last_insp[v] = today
        fleet.next_insp[v] = _next_due_day(rng, fleet.last_insp[v : v + 1], params)[0]
    return opened
