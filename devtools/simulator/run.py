"""``python -m devtools simulate``: operators' daily deliveries from a real GTFS network, with ground truth.

Output folder layout (the drop layout ingestion reads, plus the truth beside it)::

    OUT/bus/gtfs/gtfs_<version>.zip              OUT/parking/facilities/referentiel_parcs_<date>.csv
    OUT/bus/fleet/parc_vehicules_<date>.csv      OUT/parking/occupancy/occupation_parcs_<date>.csv
    OUT/bus/ticketing/VALIDATIONS_<date>.csv     OUT/truth/<table>/service_date=<date>/part-0.parquet
    OUT/bus/avl/sae_passages_<date>.jsonl        OUT/truth/faults.json
    OUT/bus/trips/sae_courses_<date>.jsonl       OUT/simulation.json
    OUT/bus/apc/comptages_<date>.csv
    OUT/bus/survey/enquete_comptage_<date>.csv (weekdays)
    OUT/bus/maintenance/export_GMAO_<date>.xlsx

Each delivered file's modification time is when the operator delivered it (normally the night
after the service day; later for a late delivery).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from tqdm import tqdm

from citylake.core.calendar_fr import SUNDAY_HOLIDAY, day_info, dst_change_days, service_day_start
from devtools.simulator import declared, deliveries, faults, standard, transit
from devtools.simulator import fleet as fleet_mod
from devtools.simulator.demand import FARES, PAPER, DemandModel, build_population
from devtools.simulator.network import BaseNetwork, feed_for_period, load_network
from devtools.simulator.params import SCALES, Params
from devtools.simulator.parking import build_car_parks, occupancy_day
from ingestion import gtfs
from ingestion.contracts import contract

#: Validations per rider of the population on a term-time weekday (measured on the sample
#: network; used to size the population for a scale's target).
VALIDATIONS_PER_RIDER = 1.38


@dataclass
class SimulationConfig:
    network: Path
    start: date
    days: int
    scale: str = "small"
    volume: float = 1.0  # multiplies the scale's validations and trips (the benchmark's growth curve)
    out: Path = Path("drop")
    faults: tuple[str, ...] = ()
    seed: int = 42
    #: the city's facts (citylake.core.city): `python -m devtools simulate` takes them from the
    #: same configuration as the platform (city.yaml, CITYLAKE_TIMEZONE)
    tz: str = "Europe/Paris"
    school_zone: str = "C"
    holidays: str = "metropole"
    insee: str = "99999"
    progress: bool = True
    params: Params = field(default_factory=Params)
    #: vendor: each feed as its shipped extract contract says; standard: the offer in NeTEx,
    #: ticketing in TIDES and AVL in ``avl_format`` (gtfs_rt or siri), read through the contracts
    #: written to OUT/config (devtools/simulator/standard.py)
    formats: str = "vendor"
    avl_format: str = "gtfs_rt"


def _instants(base: datetime, secs: np.ndarray) -> pl.Series:
    epoch = int(base.timestamp())
    return (
        pl.from_epoch(pl.Series(np.asarray(secs, dtype=np.int64) + epoch), time_unit="s")
        .dt.replace_time_zone("UTC")
        .dt.cast_time_unit("us")
    )


def _local(day: date, hour: float, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)) + timedelta(hours=hour)


def _write_truth(out: Path, table: str, day: date | None, frame: pl.DataFrame) -> None:
    folder = out / "truth" / table / (f"service_date={day.isoformat()}" if day else "")
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "part-0.parquet", compression="zstd")


class Simulation:
    def __init__(self, cfg: SimulationConfig) -> None:
        if cfg.scale not in SCALES:
            raise ValueError(f"unknown scale {cfg.scale!r}: {', '.join(SCALES)}")
        if cfg.days < 1:
            raise ValueError("--days must be at least 1")
        if not 0 < cfg.volume <= 16:
            raise ValueError(f"--volume must be in ]0, 16], not {cfg.volume:g}")
        if cfg.formats not in ("vendor", "standard"):
            raise ValueError(f"--formats must be vendor or standard, not {cfg.formats!r}")
        if cfg.avl_format not in ("gtfs_rt", "siri"):
            raise ValueError(f"--avl-format must be gtfs_rt or siri, not {cfg.avl_format!r}")
        if cfg.formats == "standard" and cfg.faults:
            raise ValueError(
                "faults are simulated on the vendor formats only: use --faults none with --formats standard"
            )
        self.cfg = cfg
        self.p = cfg.params
        end = cfg.start + timedelta(days=cfg.days - 1)
        if "dst" in cfg.faults and not dst_change_days(cfg.start, end, cfg.tz):
            raise ValueError(
                f"the dst fault needs a window containing a DST change day; {cfg.start}..{end} has none "
                "(last Sunday of March or October)"
            )
        self.net: BaseNetwork = load_network(cfg.network)
        target = {k: (v * cfg.volume if v else v) for k, v in SCALES[cfg.scale].items()}
        weekday_trips = len(self.net.trips_on_template(self.net.template_for(0) or self.net.template_for(1)))
        self.tiles = max(1, round(target["trips"] / max(weekday_trips, 1))) if target["trips"] else 1
        self.per_tile = max(50, round(target["validations"] / (VALIDATIONS_PER_RIDER * self.tiles)))
        self.model = DemandModel.build(self.net, self.p, cfg.seed)
        self.pop = build_population(self.model, self.tiles, self.per_tile, cfg.seed)
        self.fleet = fleet_mod.build_fleet(self.net, self.tiles, cfg.start, self.p, cfg.seed)
        self.parks = build_car_parks(self.net, self.tiles, cfg.insee, cfg.seed)
        self.ids = deliveries.Ids(self.net)
        vehicles = self.fleet.register.filter(pl.col("tile") == 0)["vehicle_id"].to_list()
        self.plan = faults.plan_faults(
            cfg.faults, cfg.days, cfg.seed, vehicles, self.parks["facility_id"].to_list()[:5]
        )
        self.blocks: dict = {}
        self.summary: dict = {"days": []}
        self.books = declared.Books(cfg.faults)  # the operators' monthly reports, honest and declared

    # -- helpers -------------------------------------------------------------------------
    def template_of(self, day: date):
        info = day_info(day, self.cfg.school_zone, self.cfg.holidays)
        wd = 6 if info.day_type == SUNDAY_HOLIDAY else day.weekday()
        return self.net.template_for(wd)

    def _deliver(self, operator: str, feed: str, name: str, data: bytes, at: datetime) -> Path:
        return deliveries.deliver(self.cfg.out / operator / feed / name, data, at)

    def _deliver_frame(
        self,
        operator: str,
        feed: str,
        day: date,
        frame: pl.DataFrame,
        at: datetime,
        vendor_hook=None,
        day_index: int = 0,
        encoding: str | None = None,
    ) -> tuple[str, bytes]:
        c = contract(operator, feed)
        vendor = deliveries.vendor_frame(c, frame, self.cfg.tz)
        if vendor_hook:
            vendor = vendor_hook(vendor)
        if encoding:
            c = type(c)(**{**asdict(c), "file": {**c.file, "encoding": encoding}, "columns": c.columns})
        data = deliveries.render(c, vendor)
        name = c.file_name(day)
        self._deliver(operator, feed, name, data, at)
        return name, data

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        out = cfg.out
        for sub in ("bus", "parking", "truth", "config"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        out.mkdir(parents=True, exist_ok=True)
        steps = ["service", "riders", "ticketing", "avl", "apc", "truth", "maintenance", "parking"]
        bar = tqdm(total=cfg.days * len(steps) + 1, desc="simulate", unit="step", disable=not cfg.progress)
        self._deliver_registers()
        bar.update(1)
        for index in range(cfg.days):
            day = cfg.start + timedelta(days=index)
            bar.set_postfix_str(day.isoformat())
            self._day(index, day, bar)
        bar.close()
        (out / "truth").mkdir(parents=True, exist_ok=True)
        (out / "truth" / "faults.json").write_text(json.dumps(self.plan.records, indent=2, ensure_ascii=False))
        self.summary.update(
            {
                "network": str(cfg.network),
                "network_name": self.net.name,
                "start": cfg.start.isoformat(),
                "days": self.summary["days"],
                "scale": cfg.scale,
                "volume": cfg.volume,
                "tiles": self.tiles,
                "population": len(self.pop),
                "vehicles": len(self.fleet),
                "car_parks": self.parks.height,
                "faults": list(cfg.faults),
                "seed": cfg.seed,
                "timezone": cfg.tz,
                "school_zone": cfg.school_zone,
                "holidays": cfg.holidays,
                "formats": cfg.formats if cfg.formats == "vendor" else f"standard (AVL {cfg.avl_format})",
            }
        )
        (out / "simulation.json").write_text(json.dumps(self.summary, indent=2, default=str))
        return self.summary

    def _deliver_registers(self) -> None:
        cfg = self.cfg
        at = _local(cfg.start - timedelta(days=1), 18, cfg.tz)
        feed = feed_for_period(self.net, self.tiles, cfg.start, cfg.days, self.template_of, cfg.tz)
        version = feed["feed_info"]["feed_version"][0]
        if cfg.formats == "standard":
            from ingestion import registry
            from ingestion.contracts import load_file

            config = standard.write_city_config(cfg.out / "config", cfg.avl_format, registry.CONFIG)
            self.standard = {
                feed_: load_file(config / "contracts" / f"bus__{feed_}.v1.yaml")
                for feed_ in ("gtfs", "ticketing", "avl")
            }
            name = self.standard["gtfs"].file_name(feed_version=version)
            self._deliver("bus", "gtfs", name, standard.netex_offer(feed, at, cfg.tz), at)
        else:
            path = cfg.out / "bus" / "gtfs" / contract("bus", "gtfs").file_name(feed_version=version)
            gtfs.write_feed(feed, path)
            deliveries.deliver(path, path.read_bytes(), at)
        reg = self.fleet.register.with_columns(pl.col("commissioned_on").cast(pl.Date))
        self._deliver_frame("bus", "fleet", cfg.start, reg, at)
        parks = self.parks.with_columns(
            pl.lit(cfg.insee).alias("insee"),
            pl.lit(None, pl.Utf8).alias("address"),
            pl.when(pl.col("kind") == "parc-relais")
            .then(pl.lit("abonnés"))
            .otherwise(pl.lit("tous"))
            .alias("user_type"),
            pl.when(pl.col("kind") == "parc-relais")
            .then(pl.col("capacity"))
            .otherwise(None)
            .alias("park_and_ride_places"),
            pl.lit("00000000000000").alias("operator_siret"),
            pl.when(pl.col("kind") == "parc-relais")
            .then(pl.lit("enclos_en_surface"))
            .otherwise(pl.lit("ouvrage"))
            .alias("structure_type"),
        )
        self._deliver_frame("parking", "facilities", cfg.start, parks, at)
        _write_truth(cfg.out, "vehicles", None, self.fleet.register)
        _write_truth(cfg.out, "car_parks", None, self.parks)

    def _day(self, index: int, day: date, bar) -> None:
        cfg, p, net, fleet, ids, plan = self.cfg, self.p, self.net, self.fleet, self.ids, self.plan
        rng = np.random.default_rng([cfg.seed, day.toordinal()])
        info = day_info(day, cfg.school_zone, cfg.holidays)
        base = service_day_start(day, cfg.tz)
        night = _local(day + timedelta(days=1), 3, cfg.tz)
        available = fleet.available(day, cfg.tz)

        events = np.random.default_rng([cfg.seed, day.toordinal(), 73])  # disruptions: a stream of their own
        svc = transit.run_service(
            net, fleet, info, self.template_of(day), self.tiles, p, rng, cfg.tz, self.blocks, events
        )
        bar.update(1)
        st, counters = transit.riders_travel(self.model, self.pop, svc, fleet, p, rng)
        bar.update(1)
        boardings, alightings, load = transit.stop_visit_truth(st, svc)

        trip_of_row = svc.row_trip
        trip_ids = ids.trip(svc.trip_base, svc.trip_tile)
        route_names = ids.route_name(net.trip_route[svc.trip_base], svc.trip_tile)
        veh_ids = fleet.register["vehicle_id"].to_numpy()
        trip_vehicle = np.where(svc.trip_vehicle >= 0, veh_ids[np.maximum(svc.trip_vehicle, 0)], None)
        direction = net.trips["direction_id"].to_numpy()[svc.trip_base]

        # -- ticketing ---------------------------------------------------------------------
        ok = st.status == 1
        rider = st.rider
        pass_holder = transit.is_pass(self.pop.fare[rider])
        validates = (
            ok
            & ~self.pop.fraud[rider]
            & ((st.leg == 0) | ~pass_holder | (rng.random(len(rider)) >= p.transfer_non_validation))
        )
        v = np.flatnonzero(validates)
        brow = st.board_row[v]
        vtime = svc.arr[brow] + (rng.random(len(v)) * np.maximum(svc.dep[brow] - svc.arr[brow], 5)).astype(np.int64)
        vr = rider[v]
        fare = self.pop.fare[vr]
        paper = fare == PAPER
        serial = pl.select(
            pl.when(pl.Series(paper))
            .then(pl.lit("P") + pl.Series(rng.integers(10**9, 10**10, len(v))).cast(pl.Utf8))
            .otherwise(pl.Series(self.pop.card[vr]).cast(pl.Utf8))
        ).to_series()
        price = np.array([f[1] for f in FARES])[fare]
        first_of_day = np.r_[True, vr[1:] != vr[:-1]]  # stages are in (rider, slot) order
        is_transfer = st.leg[v] == 1
        pass24 = np.array([f[0] == "Pass 24h" for f in FARES])[fare]
        amount = np.where(is_transfer, 0.0, np.where(pass24 & ~first_of_day, 0.0, price))
        trip = trip_of_row[brow]
        stop_idx = net.st_stop[svc.row_base[brow]]
        stop_ids = ids.stop(stop_idx, svc.trip_tile[trip])
        drop_stop = pl.Series(rng.random(len(v)) < p.missing_stop_share)
        ticketing = pl.DataFrame(
            {
                "validated_at": _instants(base, vtime),
                "card_serial": serial,
                "medium_type": np.where(paper, "Ticket papier", "Carte"),
                "fare_product": pl.Series(np.array([f[0] for f in FARES], dtype=object)[fare], dtype=pl.Utf8),
                "validation_type": np.where(is_transfer, "Correspondance", "Validation"),
                "route_short_name": route_names.gather(trip),
                "direction": np.where(direction[trip] == 0, "Aller", "Retour"),
                "stop_id": stop_ids,
                "vehicle_id": trip_vehicle[trip].astype(str),
                "validator_id": pl.Series(trip_vehicle[trip].astype(str))
                + "-V"
                + pl.Series(rng.integers(1, 3, len(v))).cast(pl.Utf8),
                "amount_eur": amount,
                **({"trip_id": trip_ids.gather(trip)} if cfg.formats == "standard" else {}),
            }
        ).with_columns(pl.when(drop_stop).then(None).otherwise(pl.col("stop_id")).alias("stop_id"))
        dup = pl.Series(rng.random(ticketing.height) < p.double_validation_share)
        doubles = ticketing.filter(dup).with_columns(
            (pl.col("validated_at") + pl.duration(seconds=pl.Series(rng.integers(2, 20, int(dup.sum()))))).alias(
                "validated_at"
            )
        )
        ticketing = pl.concat([ticketing, doubles]).sort("validated_at", "vehicle_id", maintain_order=True)
        ticketing = faults.ticketing_frame_faults(plan, ticketing, day, rng)
        self._ticketing_delivery(index, day, ticketing, night, rng)
        validated_per_row = np.bincount(brow, minlength=svc.n_rows)
        bar.update(1)

        # -- AVL and trips -----------------------------------------------------------------
        rows = np.flatnonzero(svc.served)
        rtrip = trip_of_row[rows]
        stop_all = ids.stop(net.st_stop[svc.row_base], svc.trip_tile[trip_of_row])
        avl = pl.DataFrame(
            {
                "service_date": pl.Series([day] * len(rows), dtype=pl.Date),
                "trip_id": trip_ids.gather(rtrip),
                "route_short_name": route_names.gather(rtrip),
                "direction_id": direction[rtrip],
                "vehicle_id": trip_vehicle[rtrip].astype(str),
                "stop_id": stop_all.gather(rows),
                "stop_sequence": net.st_seq[svc.row_base[rows]],
                "scheduled_arrival_at": _instants(base, svc.sched_arr[rows]),
                "scheduled_departure_at": _instants(base, svc.sched_dep[rows]),
                "actual_arrival_at": _instants(base, svc.arr[rows]),
                "actual_departure_at": _instants(base, svc.dep[rows]),
                "odometer_km": svc.odometer[rows],
            }
        )
        avl = faults.avl_faults(plan, avl, day)
        if cfg.formats == "standard":
            self._standard_avl(day, svc, trip_ids, route_names, direction, trip_vehicle, stop_all, base, night)
        else:
            self._vendor_avl(index, day, avl, night)

        tf = transit.trips_frame(net, svc, fleet, ids)
        # the operator's own view, its biases applied (a stream of its own: no other draw moves)
        bias_rng = np.random.default_rng([cfg.seed, day.toordinal(), 61])
        reported = declared.report_trips(
            tf["is_cancelled"].to_numpy(), tf["cancel_cause"], tf["is_detoured"].to_numpy(), cfg.faults, bias_rng
        )
        self.books.trips(
            day, route_names, tf["scheduled_km"].to_numpy(), tf["is_cancelled"].to_numpy(), tf["cancel_cause"], reported
        )
        served_rows = np.flatnonzero(svc.served)
        self.books.punctuality(day, svc.dep[served_rows] - svc.sched_dep[served_rows])

        trips = pl.DataFrame(
            {
                "service_date": pl.Series([day] * tf.height, dtype=pl.Date),
                "trip_id": tf["trip_id"],
                "route_short_name": route_names,
                "direction_id": tf["direction_id"],
                "vehicle_id": tf["vehicle_id"],
                "scheduled_start_at": _instants(base, tf["scheduled_start_s"].to_numpy()),
                "scheduled_end_at": _instants(base, tf["scheduled_end_s"].to_numpy()),
                "trip_status": reported.status,
                "cancel_cause": reported.cause,
                "cancel_cause_class": reported.cause.replace_strict(
                    transit.CAUSE_CLASS, default=None, return_dtype=pl.Utf8
                ),
                "scheduled_km": tf["scheduled_km"],
            }
        )
        self._deliver_frame("bus", "trips", day, trips, night - timedelta(minutes=35))
        bar.update(1)

        # -- APC on equipped vehicles ------------------------------------------------------
        equipped = np.where(svc.trip_vehicle >= 0, fleet.apc[np.maximum(svc.trip_vehicle, 0)], False)
        arows = rows[equipped[rtrip]]
        tb, ta = boardings[arows], alightings[arows]
        ob = tb - rng.binomial(tb, p.apc_miss_boarding) + rng.poisson(p.apc_spurious_rate, len(arows))
        oa = ta - rng.binomial(ta, p.apc_miss_alighting) + rng.poisson(p.apc_spurious_rate, len(arows))
        apc = pl.DataFrame(
            {
                "vehicle_id": trip_vehicle[trip_of_row[arows]].astype(str),
                "trip_id": trip_ids.gather(trip_of_row[arows]),
                "stop_id": stop_all.gather(arows),
                "stop_sequence": net.st_seq[svc.row_base[arows]],
                "actual_arrival_at": _instants(base, svc.arr[arows]),
                "boardings": ob,
                "alightings": oa,
            }
        )
        apc = faults.apc_faults(plan, apc, day, rng)
        late = plan.on("late_delivery", index)
        at = _local(day + timedelta(days=3), 10, cfg.tz) if late else night - timedelta(minutes=20)
        name, _ = self._deliver_frame("bus", "apc", day, apc, at)
        if late:
            plan.record("late_delivery", "bus", "apc", day, name, f"delivered {at.isoformat()} (deadline D+1 06:00)")
        bar.update(1)

        # -- manual counts (enquête de comptage), weekdays -----------------------------------
        if day.weekday() < 5:
            self._survey_delivery(day, svc, boardings, alightings, trip_ids, route_names, stop_all, night)

        # -- truth -------------------------------------------------------------------------
        capacity = np.where(svc.trip_vehicle >= 0, fleet.capacity[np.maximum(svc.trip_vehicle, 0)], 0)
        _write_truth(
            cfg.out,
            "stop_visits",
            day,
            pl.DataFrame(
                {
                    "service_date": pl.Series([day] * svc.n_rows, dtype=pl.Date),
                    "trip_id": trip_ids.gather(trip_of_row),
                    "route_id": ids.route(net.trip_route[svc.trip_base[trip_of_row]], svc.trip_tile[trip_of_row]),
                    "route_short_name": route_names.gather(trip_of_row),
                    "direction_id": direction[trip_of_row],
                    "stop_id": stop_all,
                    "stop_sequence": net.st_seq[svc.row_base],
                    "vehicle_id": transit.nullable_text(
                        veh_ids[np.maximum(svc.trip_vehicle, 0)][trip_of_row], svc.trip_vehicle[trip_of_row] < 0
                    ),
                    "is_served": svc.served,
                    "scheduled_departure_at": _instants(base, svc.sched_dep),
                    "actual_arrival_at": _instants(base, svc.arr),
                    "actual_departure_at": _instants(base, svc.dep),
                    "boardings": boardings,
                    "alightings": alightings,
                    "load": load,
                    "validated_boardings": validated_per_row,
                    "capacity": capacity[trip_of_row],
                }
            ),
        )
        _write_truth(cfg.out, "trips", day, tf.with_columns(pl.lit(day).alias("service_date"), reported.bias))
        s = np.flatnonzero(ok)
        srow_b, srow_a = st.board_row[s], st.alight_row[s]
        card = self.pop.card[rider[s]]
        _write_truth(
            cfg.out,
            "stages",
            day,
            pl.DataFrame(
                {
                    "service_date": pl.Series([day] * len(s), dtype=pl.Date),
                    "rider_id": rider[s],
                    "card_serial": pl.Series(card).cast(pl.Utf8).replace("0", None),
                    "is_fraud": self.pop.fraud[rider[s]],
                    "fare_product": pl.Series(
                        np.array([f[0] for f in FARES], dtype=object)[self.pop.fare[rider[s]]], dtype=pl.Utf8
                    ),
                    "journey_no": st.journey[s],
                    "leg": st.leg[s],
                    "trip_id": trip_ids.gather(trip_of_row[srow_b]),
                    "board_stop_id": stop_all.gather(srow_b),
                    "board_stop_sequence": net.st_seq[svc.row_base[srow_b]],
                    "boarded_at": _instants(base, svc.dep[srow_b]),
                    "alight_stop_id": stop_all.gather(srow_a),
                    "alight_stop_sequence": net.st_seq[svc.row_base[srow_a]],
                    "alighted_at": _instants(base, svc.arr[srow_a]),
                    "is_validated": validates[s],
                }
            ),
        )
        peak = base + timedelta(seconds=p.peak_check_s)
        self.books.fleet(day, fleet.immobilised_at(peak), bias_rng)
        self.books.validations(day, ticketing.height, float(ticketing["amount_eur"].sum()))
        active_at_peak = (svc.sched_dep[svc.trip_start] <= p.peak_check_s) & (
            svc.sched_arr[svc.trip_start + svc.trip_count - 1] >= p.peak_check_s
        )
        required = np.zeros(self.tiles, dtype=np.int64)
        for k in range(self.tiles):
            required[k] = len(np.unique(svc.trip_block[active_at_peak & (svc.trip_tile == k)]))
        _write_truth(
            cfg.out,
            "vehicle_days",
            day,
            fleet.register.select("vehicle_id", "tile", "vehicle_class").with_columns(
                pl.lit(day).alias("service_date"),
                pl.Series("is_available_for_service", available),
                pl.Series("is_immobilised_at_peak", fleet.immobilised_at(peak)),
                pl.Series("km", svc.vehicle_km.round(1)),
                pl.Series("vehicles_required_at_peak", required[fleet.tile]),
            ),
        )
        bar.update(1)

        # -- maintenance -------------------------------------------------------------------
        fleet_mod.end_of_day(fleet, day, svc.vehicle_km, p, rng, cfg.tz)
        self._maintenance_delivery(day, night)
        bar.update(1)

        # -- parking -----------------------------------------------------------------------
        occ = occupancy_day(self.parks, info, cfg.tz, p, rng)
        _write_truth(cfg.out, "parking_occupancy", day, occ)
        delivered = (
            faults.parking_faults(plan, occ, day, index, cfg.tz)
            .join(self.parks.select("facility_id", "facility_name"), on="facility_id")
            .with_columns(
                (pl.col("capacity") - pl.col("occupied")).alias("free"),
                (pl.col("occupied") / pl.col("capacity") * 100).alias("occupancy_rate_pct"),
            )
        )
        encoding = "utf-8" if plan.on("wrong_encoding", index) else None
        name, _ = self._deliver_frame(
            "parking", "occupancy", day, delivered, night - timedelta(minutes=50), encoding=encoding
        )
        if encoding:
            plan.record(
                "wrong_encoding", "parking", "occupancy", day, name, "written in UTF-8, contract says Windows-1252"
            )
        self.books.parking(day, occ.height, delivered.height, int(delivered["entries"].sum()))
        if (day + timedelta(days=1)).month != day.month:  # the month is over: its reports
            self._monthly_reports(day, night)
        bar.update(1)

        self.summary["days"].append(
            {
                "service_date": day.isoformat(),
                "day_type": info.label,
                # the feed's date whose trips serve this simulated date (None: no service that weekday)
                "served_by_feed_date": str(self.template_of(day)) if self.template_of(day) else None,
                "public_holiday": info.public_holiday_name,
                "trips_scheduled": len(svc.trip_base),
                "trips_cancelled": int((svc.trip_cancel >= 0).sum()),
                "validations": ticketing.height,
                "boardings": int(boardings.sum()),
                "stop_visits": len(rows),
                "apc_rows": len(arows),
                **counters,
            }
        )

    def _monthly_reports(self, day: date, night: datetime) -> None:
        """Each operator's report of the month ending on ``day`` (its declared book), delivered
        the night after, with the truth of both books. ``declared_missing_month`` keeps the
        parking operator's first report; ``declared_late`` makes the bus operator's late."""
        month = f"{day:%Y-%m}"
        figures = self.books.month(month)
        _write_truth(self.cfg.out, "declared_figures", day, figures.with_columns(pl.lit(day).alias("service_date")))
        plan = self.plan
        for kind, figure in declared.BIASES.items():
            bent = figures.filter(
                pl.col("route_short_name").is_null() & pl.col("biases").str.contains(kind).fill_null(False)
            )
            if plan.on(kind) and bent.height:
                row = bent.filter(pl.col("figure_code") == figure).row(0, named=True)
                plan.record(
                    kind,
                    "bus",
                    "declared",
                    day,
                    None,
                    f"{month}: {figure} declared {row['declared_value']:.4g}, {row['honest_value']:.4g} in truth",
                )
        for operator in ("bus", "parking"):
            if operator == "parking" and plan.on("declared_missing_month"):
                if not any(r["kind"] == "declared_missing_month" for r in plan.records):
                    plan.record("declared_missing_month", operator, "declared", day, None, f"no report for {month}")
                    continue
            late = operator == "bus" and plan.on("declared_late")
            next_month = day + timedelta(days=1)
            at = _local(next_month.replace(day=12), 15, self.cfg.tz) if late else night - timedelta(minutes=30)
            c = contract(operator, "declared")
            label = {code: text for text, code in dict(c.column("figure_code").recode).items()}
            rows = figures.filter(pl.col("operator") == operator)
            rate = pl.col("figure_code").is_in(declared.RATES)
            frame = rows.select(
                pl.col("month"),
                pl.col("route_short_name"),
                pl.col("figure_code").replace_strict(label),
                # as a report shows them: rates in % to 2 decimals, km and euros to one decimal, counts whole
                pl.when(rate)
                .then((pl.col("declared_value") * 100).round(2))
                .when(pl.col("figure_code").str.starts_with("km_") | (pl.col("figure_code") == "recettes"))
                .then(pl.col("declared_value").round(1))
                .otherwise(pl.col("declared_value").round(0))
                .alias("value"),
                pl.when(rate)
                .then(pl.lit("%"))
                .when(pl.col("figure_code").str.starts_with("km_"))
                .then(pl.lit("km"))
                .when(pl.col("figure_code") == "recettes")
                .then(pl.lit("€"))
                .otherwise(pl.lit("nombre"))
                .alias("unit"),
            )
            name, _ = self._deliver_frame(operator, "declared", day, frame, at)
            if late:
                plan.record(
                    "declared_late",
                    operator,
                    "declared",
                    day,
                    name,
                    f"delivered {at.isoformat()} (due the 10th, 12:00)",
                )

    def _survey_delivery(self, day, svc, boardings, alightings, trip_ids, route_names, stop_all, night) -> None:
        """Surveyors ride a sample of the trips that ran and count every served stop (their own
        random stream: the rest of the simulation draws exactly as without a survey)."""
        p, net = self.p, self.net
        rng = np.random.default_rng([self.cfg.seed, day.toordinal(), 7])
        surveyed = (svc.trip_cancel < 0) & (rng.random(len(svc.trip_cancel)) < p.survey_trip_share)
        rows = np.flatnonzero(surveyed[svc.row_trip] & svc.served)
        tb, ta = boardings[rows], alightings[rows]
        trip = svc.row_trip[rows]
        frame = pl.DataFrame(
            {
                "service_date": pl.Series([day] * len(rows), dtype=pl.Date),
                "trip_id": trip_ids.gather(trip),
                "route_short_name": route_names.gather(trip),
                "stop_id": stop_all.gather(rows),
                "stop_sequence": net.st_seq[svc.row_base[rows]],
                "boardings": tb - rng.binomial(tb, p.survey_miss) + rng.poisson(p.survey_spurious_rate, len(rows)),
                "alightings": ta - rng.binomial(ta, p.survey_miss) + rng.poisson(p.survey_spurious_rate, len(rows)),
                "surveyor_id": pl.Series([f"E{k % 12 + 1:02d}" for k in trip], dtype=pl.Utf8),
            }
        )
        self._deliver_frame("bus", "survey", day, frame, night + timedelta(hours=2))

    def _vendor_avl(self, index: int, day: date, avl: pl.DataFrame, night: datetime) -> None:
        plan, c = self.plan, contract("bus", "avl")
        data = deliveries.render(c, deliveries.vendor_frame(c, avl, self.cfg.tz))
        name = c.file_name(day)
        self._deliver("bus", "avl", name, data, night - timedelta(minutes=40))
        if plan.on("duplicate_delivery", index):
            dup_name = name.replace(".jsonl", " (1).jsonl")
            self._deliver("bus", "avl", dup_name, data, night - timedelta(minutes=10))
            plan.record("duplicate_delivery", "bus", "avl", day, dup_name, f"same bytes as {name}")

    def _standard_avl(self, day, svc, trip_ids, route_names, direction, trip_vehicle, stop_all, base, night) -> None:
        """AVL in GTFS-RT or SIRI: every stop of the trips that ran (detour stops unserved) and the
        trips not run, from the same service as the vendor file."""
        net, ids = self.net, self.ids
        ran = svc.trip_cancel < 0
        rows = np.flatnonzero(ran[svc.row_trip])
        rtrip = svc.row_trip[rows]
        route_ids = ids.route(net.trip_route[svc.trip_base], svc.trip_tile)
        visits = pl.DataFrame(
            {
                "trip_id": trip_ids.gather(rtrip),
                "route_id": route_ids.gather(rtrip),
                "direction_id": direction[rtrip],
                "vehicle_id": pl.Series(trip_vehicle[rtrip], dtype=pl.Utf8),
                "stop_id": stop_all.gather(rows),
                "stop_sequence": net.st_seq[svc.row_base[rows]],
                "is_served": svc.served[rows],
                "scheduled_arrival_at": _instants(base, svc.sched_arr[rows]),
                "scheduled_departure_at": _instants(base, svc.sched_dep[rows]),
                "actual_arrival_at": _instants(base, svc.arr[rows]),
                "actual_departure_at": _instants(base, svc.dep[rows]),
            }
        )
        gone = np.flatnonzero(~ran)
        first, last = svc.trip_start[gone], svc.trip_start[gone] + svc.trip_count[gone] - 1
        cancelled = pl.DataFrame(
            {
                "trip_id": trip_ids.gather(gone),
                "route_id": route_ids.gather(gone),
                "scheduled_start_at": _instants(base, svc.sched_dep[first]),
                "scheduled_end_at": _instants(base, svc.sched_arr[last]),
            }
        )
        c = self.standard["avl"]
        if self.cfg.avl_format == "siri":
            data = standard.siri_et_day(day, visits, cancelled, night - timedelta(minutes=45), self.cfg.tz)
        else:
            data = standard.gtfs_rt_polls(day, visits, cancelled)
        self._deliver("bus", "avl", c.file_name(day), data, night - timedelta(minutes=40))

    def _ticketing_delivery(self, index: int, day: date, frame: pl.DataFrame, night: datetime, rng) -> None:
        plan, cfg = self.plan, self.cfg
        if cfg.formats == "standard":
            c = self.standard["ticketing"]
            self._deliver(
                "bus", "ticketing", c.file_name(day), standard.tides_fare_transactions(day, frame, cfg.tz), night
            )
            return
        c = contract("bus", "ticketing")
        name = c.file_name(day)
        if plan.on("missing_day", index):
            plan.record("missing_day", "bus", "ticketing", day, name, "never delivered")
            return
        vendor = deliveries.vendor_frame(c, frame, cfg.tz)
        vendor = faults.ticketing_vendor_faults(plan, vendor, day, index, rng)
        data = deliveries.render(c, vendor)
        if plan.on("truncated_file", index):
            cut = faults.truncate(data)
            self._deliver("bus", "ticketing", name, cut, night)
            plan.record("truncated_file", "bus", "ticketing", day, name, f"{len(cut)} of {len(data)} bytes delivered")
        else:
            self._deliver("bus", "ticketing", name, data, night)
        if plan.on("redelivery", index):
            v2 = name.replace(".csv", "_v2.csv")
            at = _local(day + timedelta(days=2), 9, cfg.tz)
            self._deliver("bus", "ticketing", v2, data, at)
            plan.record(
                "redelivery",
                "bus",
                "ticketing",
                day,
                v2,
                f"corrected complete file, supersedes {name}, delivered {at.isoformat()}",
            )

    def _maintenance_delivery(self, day: date, night: datetime) -> None:
        cfg = self.cfg
        zone = ZoneInfo(cfg.tz)
        end = _local(day + timedelta(days=1), 0, cfg.tz)
        veh = self.fleet.register["vehicle_id"].to_numpy()
        rows = []
        for wo in self.fleet.orders:
            opened_day = wo.opened_at.astimezone(zone).date()
            closed_day = wo.closed_at.astimezone(zone).date()
            if opened_day != day and closed_day != day:
                continue
            closed = wo.closed_at <= end
            rows.append(
                {
                    "work_order_id": wo.ot_id,
                    "vehicle_id": veh[wo.vehicle],
                    "work_order_type": wo.kind,
                    "component": wo.component,
                    "opened_at": wo.opened_at.astimezone(UTC),
                    "closed_at": wo.closed_at.astimezone(UTC) if closed else None,
                    "odometer_km": wo.odometer_km,
                    "due_km": wo.due_km,
                    "due_date": wo.due_date,
                    "labour_hours": wo.labour_hours,
                    "parts_cost_eur": wo.parts_cost,
                    "is_immobilising": wo.immobilising,
                    "status": "Clôturé" if closed else "En cours",
                }
            )
        schema = {
            "work_order_id": pl.Utf8,
            "vehicle_id": pl.Utf8,
            "work_order_type": pl.Utf8,
            "component": pl.Utf8,
            "opened_at": pl.Datetime("us", "UTC"),
            "closed_at": pl.Datetime("us", "UTC"),
            "odometer_km": pl.Float64,
            "due_km": pl.Float64,
            "due_date": pl.Date,
            "labour_hours": pl.Float64,
            "parts_cost_eur": pl.Float64,
            "is_immobilising": pl.Boolean,
            "status": pl.Utf8,
        }
        frame = pl.DataFrame(rows, schema=schema)
        self._deliver_frame("bus", "maintenance", day, frame, night + timedelta(minutes=30))


def simulate(cfg: SimulationConfig) -> dict:
    """Run the simulation described by ``cfg`` and return its summary."""
    return Simulation(cfg).run()
