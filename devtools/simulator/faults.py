"""Faults on demand: what real operator deliveries get wrong, injected reproducibly.

Each kind targets the feed where it happens in real life. The plan (which day, which vehicle,
which car park) is drawn from the seed; what was actually injected is written to
``truth/faults.json`` so tests and rehearsals can check the documented outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

FAULT_KINDS: dict[str, str] = {
    "missing_day": "bus/ticketing: one day is never delivered",
    "duplicate_delivery": "bus/avl: one day's file is delivered twice under two names (same bytes)",
    "late_delivery": "bus/apc: one day's file arrives two days after its deadline",
    "truncated_file": "bus/ticketing: one day's file is cut in the middle of a row",
    "redelivery": "bus/ticketing: a corrected complete file of a day is delivered again later (_v2)",
    "schema_drift": "bus/ticketing: one day has a renamed column, two columns swapped and an extra column",
    "wrong_encoding": "parking/occupancy: one day's file is UTF-8 instead of Windows-1252",
    "unparsable_rows": "bus/ticketing: ~0.2 % of rows (at least one of each kind) have an impossible date, a "
    "non-numeric amount or empty fields",
    "unknown_ids": "bus/ticketing: ~0.1 % of stop codes unknown; bus/avl: one trip reported by an unknown vehicle",
    "negative_counts": "bus/apc: ~0.3 % of rows have negative counts",
    "over_capacity": "parking/occupancy: one car park reports more cars than places for two hours",
    "stuck_sensor": "parking/occupancy: one car park repeats the same reading for six hours",
    "dst": "the simulated window must contain a DST change day (refused otherwise)",
    "clock_skew": "bus/ticketing: one vehicle's validators run four minutes fast, every day",
    # the operator's monthly report (devtools/simulator/declared.py): what it declares, bent
    "declared_run_not_run": "bus/trips + bus/declared: half the trips lost for internal causes reported run",
    "declared_external": "bus/trips + bus/declared: half the other internal losses classed external",
    "declared_punctuality": "bus/declared: punctuality computed on -2/+7 min instead of the contract's -1/+5",
    "declared_availability": "bus/declared: half the vehicles immobilised at peak counted available",
    "declared_missing_month": "parking/declared: the first monthly report never delivered",
    "declared_late": "bus/declared: the monthly reports arrive on the 12th, 15:00 (due the 10th, noon)",
}
DEFAULT_FAULTS = (
    "unparsable_rows",
    "unknown_ids",
    "negative_counts",
    "over_capacity",
    "stuck_sensor",
    "clock_skew",
    "declared_run_not_run",
    "declared_external",
    "declared_punctuality",
    "declared_availability",
)

UNKNOWN_STOP = "99990001"
UNKNOWN_VEHICLE = "9999"
SKEW_S = 240


def parse_faults(text: str | None) -> tuple[str, ...]:
    """Return the fault kinds of a --faults value: a comma list, 'default', 'all' or 'none'."""
    if text is None or text.strip() in ("", "none"):
        return ()
    out: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if item == "default":
            out.extend(DEFAULT_FAULTS)
        elif item == "all":
            out.extend(FAULT_KINDS)
        elif item in FAULT_KINDS:
            out.append(item)
        else:
            raise ValueError(f"unknown fault {item!r}: choose from {', '.join(FAULT_KINDS)}, default, all, none")
    return tuple(dict.fromkeys(out))


@dataclass
class FaultPlan:
    kinds: tuple[str, ...]
    day_of: dict[str, int] = field(default_factory=dict)
    skew_vehicle: str | None = None
    parking_facility: str | None = None
    records: list[dict] = field(default_factory=list)

    def on(self, kind: str, day_index: int | None = None) -> bool:
        if kind not in self.kinds:
            return False
        return day_index is None or self.day_of.get(kind, day_index) == day_index

    def record(self, kind: str, operator: str, feed: str, day: date | None, file: str | None, detail: str) -> None:
        self.records.append(
            {
                "kind": kind,
                "operator": operator,
                "feed": feed,
                "service_date": day.isoformat() if day else None,
                "file": file,
                "detail": detail,
            }
        )


def plan_faults(
    kinds: tuple[str, ...], days: int, seed: int, vehicle_ids: list[str], facility_ids: list[str]
) -> FaultPlan:
    """Decide where each fault lands (distinct days for the ticketing file faults when possible)."""
    rng = np.random.default_rng([seed, 23])
    order = list(rng.permutation(days))
    plan = FaultPlan(kinds)
    # ticketing file faults on distinct days; the redelivery corrects the truncated day
    for kind in ("missing_day", "truncated_file", "schema_drift"):
        plan.day_of[kind] = int(order[len(plan.day_of) % days])
    plan.day_of["redelivery"] = plan.day_of["truncated_file"] if "truncated_file" in kinds else int(order[-1])
    for kind in ("duplicate_delivery", "late_delivery", "wrong_encoding", "stuck_sensor", "over_capacity"):
        plan.day_of[kind] = int(rng.integers(days))
    plan.parking_facility = str(rng.choice(facility_ids)) if facility_ids else None
    return plan


def ticketing_frame_faults(plan: FaultPlan, frame: pl.DataFrame, day: date, rng: np.random.Generator) -> pl.DataFrame:
    """Faults on canonical ticketing rows: clock skew of one vehicle, unknown stop codes."""
    if plan.on("clock_skew") and plan.skew_vehicle is None and frame.height:
        # the first day's busiest vehicle of the first tile: a skew that matters
        counts = frame.group_by("vehicle_id").len().sort("len", "vehicle_id", descending=[True, False])
        plan.skew_vehicle = str(counts["vehicle_id"][0])
    if plan.on("clock_skew") and plan.skew_vehicle:
        hit = frame["vehicle_id"] == plan.skew_vehicle
        frame = frame.with_columns(
            pl.when(hit)
            .then(pl.col("validated_at") + pl.duration(seconds=SKEW_S))
            .otherwise(pl.col("validated_at"))
            .alias("validated_at")
        )
        plan.record(
            "clock_skew",
            "bus",
            "ticketing",
            day,
            None,
            f"vehicle {plan.skew_vehicle}: {int(hit.sum())} validations +{SKEW_S} s",
        )
    if plan.on("unknown_ids"):
        mask = pl.Series(rng.random(frame.height) < 0.001) & frame["stop_id"].is_not_null()
        frame = frame.with_columns(
            pl.when(mask).then(pl.lit(UNKNOWN_STOP)).otherwise(pl.col("stop_id")).alias("stop_id")
        )
        plan.record(
            "unknown_ids", "bus", "ticketing", day, None, f"{int(mask.sum())} validations with stop {UNKNOWN_STOP}"
        )
    return frame


def ticketing_vendor_faults(
    plan: FaultPlan, vendor: pl.DataFrame, day: date, day_index: int, rng: np.random.Generator
) -> pl.DataFrame:
    """Faults on the vendor's text rows: unparsable rows, schema drift."""
    if plan.on("unparsable_rows"):
        n = vendor.height
        k = max(1, round(n * 0.0007)) if n >= 3 else 0  # at least one row of each kind
        order = rng.permutation(n)
        bad_date, bad_amount, empty = (np.zeros(n, dtype=bool) for _ in range(3))
        bad_date[order[:k]], bad_amount[order[k : 2 * k]], empty[order[2 * k : 3 * k]] = True, True, True
        vendor = vendor.with_columns(
            pl.when(pl.Series(bad_date))
            .then(pl.lit(f"31/02/{day.year} 25:61:00"))
            .otherwise(pl.col("Date et heure"))
            .alias("Date et heure"),
            pl.when(pl.Series(bad_amount)).then(pl.lit("1,6O€")).otherwise(pl.col("Montant (€)")).alias("Montant (€)"),
            pl.when(pl.Series(empty)).then(pl.lit(None)).otherwise(pl.col("N° support")).alias("N° support"),
            pl.when(pl.Series(empty))
            .then(pl.lit(None))
            .otherwise(pl.col("Titre de transport"))
            .alias("Titre de transport"),
        )
        plan.record(
            "unparsable_rows",
            "bus",
            "ticketing",
            day,
            None,
            f"{int(bad_date.sum())} impossible dates, {int(bad_amount.sum())} bad amounts, {int(empty.sum())} rows "
            "with empty required fields",
        )
    if plan.on("schema_drift", day_index):
        cols = vendor.columns
        i, j = cols.index("Ligne"), cols.index("Sens")
        cols[i], cols[j] = cols[j], cols[i]
        vendor = (
            vendor.select(cols).rename({"Code arrêt": "Code_Arret"}).with_columns(pl.lit("1").alias("Zone tarifaire"))
        )
        plan.record(
            "schema_drift",
            "bus",
            "ticketing",
            day,
            None,
            "'Code arrêt' renamed 'Code_Arret', 'Ligne'/'Sens' swapped, extra 'Zone tarifaire'",
        )
    return vendor


def truncate(data: bytes) -> bytes:
    """Cut a file at 60 % of its bytes, in the middle of a row."""
    cut = int(len(data) * 0.6)
    while cut < len(data) and data[cut : cut + 1] in (b"\n", b"\r"):
        cut += 1
    return data[: cut + 5]


def avl_faults(plan: FaultPlan, frame: pl.DataFrame, day: date) -> pl.DataFrame:
    if plan.on("unknown_ids") and frame.height:
        trip = frame["trip_id"][frame.height // 2]
        frame = frame.with_columns(
            pl.when(pl.col("trip_id") == trip)
            .then(pl.lit(UNKNOWN_VEHICLE))
            .otherwise(pl.col("vehicle_id"))
            .alias("vehicle_id")
        )
        plan.record(
            "unknown_ids", "bus", "avl", day, None, f"trip {trip} reported by unknown vehicle {UNKNOWN_VEHICLE}"
        )
    return frame


def apc_faults(plan: FaultPlan, frame: pl.DataFrame, day: date, rng: np.random.Generator) -> pl.DataFrame:
    if plan.on("negative_counts") and frame.height:
        mask = pl.Series(rng.random(frame.height) < 0.003)
        frame = frame.with_columns(
            pl.when(mask).then(-pl.col("boardings") - 1).otherwise(pl.col("boardings")).alias("boardings")
        )
        plan.record("negative_counts", "bus", "apc", day, None, f"{int(mask.sum())} rows with negative boardings")
    return frame


def parking_faults(plan: FaultPlan, frame: pl.DataFrame, day: date, day_index: int, tz: str) -> pl.DataFrame:
    fid = plan.parking_facility
    local_h = pl.col("observed_at").dt.convert_time_zone(tz).dt.hour()
    if plan.on("stuck_sensor", day_index) and fid:
        window = (pl.col("facility_id") == fid) & (local_h >= 9) & (local_h < 15)
        first = frame.filter(
            (pl.col("facility_id") == fid) & (pl.col("observed_at").dt.convert_time_zone(tz).dt.hour() == 9)
        )["occupied"]
        if first.len():
            frame = frame.with_columns(
                pl.when(window).then(pl.lit(int(first[0]))).otherwise(pl.col("occupied")).alias("occupied"),
                pl.when(window).then(0).otherwise(pl.col("entries")).alias("entries"),
                pl.when(window).then(0).otherwise(pl.col("exits")).alias("exits"),
            )
            plan.record(
                "stuck_sensor",
                "parking",
                "occupancy",
                day,
                None,
                f"{fid}: reading stuck at {int(first[0])} from 09:00 to 15:00",
            )
    if plan.on("over_capacity", day_index) and fid:
        window = (pl.col("facility_id") == fid) & (local_h >= 16) & (local_h < 18)
        frame = frame.with_columns(
            pl.when(window).then(pl.col("capacity") + 25).otherwise(pl.col("occupied")).alias("occupied")
        )
        plan.record(
            "over_capacity", "parking", "occupancy", day, None, f"{fid}: occupied = capacity + 25 from 16:00 to 18:00"
        )
    return frame
