"""The operator extract simulator: deliveries match their contracts, truth is consistent,
faults happen as documented, runs are deterministic, and other real feeds work."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from devtools import SAMPLE_NETWORK
from devtools.simulator.faults import FAULT_KINDS, parse_faults
from devtools.simulator.run import SimulationConfig, simulate
from ingestion.contracts import all_contracts, contract

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = SAMPLE_NETWORK
NYC = ROOT / ".cache" / "nyc_subway_gtfs.zip"
DST_START = date(2026, 3, 28)  # Sat 28, Sun 29 (DST change), Mon 30 March 2026


def run(
    out: Path, faults: str | None = None, days: int = 4, start: date = DST_START, network: Path = SAMPLE, seed: int = 7
) -> dict:
    """Simulate from DST_START: four days end the month (its monthly reports delivered)."""
    return simulate(
        SimulationConfig(
            network=network, start=start, days=days, out=out, faults=parse_faults(faults), seed=seed, progress=False
        )
    )


@pytest.fixture(scope="session")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    run(out)
    return out


@pytest.fixture(scope="session")
def faulty(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faulty")
    run(out, "all")
    return out


# -- contract conformance -----------------------------------------------------------------
PATTERNS = {
    "integer": r"-?\d+",
    "decimal_comma": r"-?\d+,\d+",
    "decimal_point": r"-?\d+\.\d+",
}


def _check_value(col, value: str, sep: str) -> str | None:
    if value == "":
        return None if not col.required else "empty required value"
    value = dict(col.recode or ()).get(value, value)  # the vendor's label, as the contract recodes it
    t = col.type
    if t in ("datetime_local", "date", "datetime_utc") and col.format:
        try:
            datetime.strptime(value, col.format)
        except ValueError:
            return f"{value!r} does not match {col.format}"
    elif t == "datetime_offset":
        datetime.fromisoformat(value)
    elif t == "integer" and not re.fullmatch(PATTERNS["integer"], value):
        return f"{value!r} is not an integer"
    elif t == "decimal" and not re.fullmatch(PATTERNS["decimal_comma" if sep == "," else "decimal_point"], value):
        return f"{value!r} is not a decimal with {sep!r}"
    elif (t in ("enum", "boolean")) and col.values and value not in col.values:
        return f"{value!r} not in {col.values}"
    elif col.pattern and not re.fullmatch(col.pattern, value):
        return f"{value!r} does not match {col.pattern}"
    return None


def check_csv(path: Path, operator: str, feed: str) -> int:
    c = contract(operator, feed)
    raw = path.read_bytes()
    text = raw.decode(c.file["encoding"])  # strict: must decode in the contract's encoding
    assert ("\r\n" in text) == (c.file["line_terminator"] == "\r\n"), f"{path.name}: line endings"
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=c.file["delimiter"]))
    assert rows[0] == c.headers, f"{path.name}: header {rows[0]} != contract {c.headers}"
    for n, row in enumerate(rows[1:], start=2):
        assert len(row) == len(c.columns), f"{path.name} row {n}: {len(row)} fields"
        for col, value in zip(c.columns, row, strict=True):
            problem = _check_value(col, value, c.file.get("decimal_separator", "."))
            assert problem is None, f"{path.name} row {n} column {col.name!r}: {problem}"
    return len(rows) - 1


def check_jsonl(path: Path, operator: str, feed: str) -> int:
    c = contract(operator, feed)
    n = 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        obj = json.loads(line)
        assert list(obj) == c.headers, f"{path.name} line {n}: keys {list(obj)}"
        for col in c.columns:
            value = obj[col.name]
            if value is None:
                assert not col.required, f"{path.name} line {n}: {col.name} is null"
                continue
            problem = _check_value(col, value if isinstance(value, str) else str(value), ".")
            if col.type in ("integer",):
                assert isinstance(value, int), f"{path.name} line {n}: {col.name}={value!r}"
            elif col.type == "decimal":
                assert isinstance(value, int | float), f"{path.name} line {n}: {col.name}={value!r}"
            else:
                assert problem is None, f"{path.name} line {n} {col.name}: {problem}"
    return n


def test_every_delivery_matches_its_contract(clean: Path) -> None:
    seen = set()
    simulated = [c for c in all_contracts() if c.operator in ("bus", "parking")]  # montpellier is real data
    for c in simulated:
        files = sorted((clean / c.operator / c.feed).glob("*"))
        assert files, f"no delivery for {c.key}"
        seen.add(c.key)
        for path in files:
            if c.format == "csv":
                assert check_csv(path, c.operator, c.feed) > 0
            elif c.format == "jsonl":
                assert check_jsonl(path, c.operator, c.feed) > 0
            elif c.format == "xlsx":
                from openpyxl import load_workbook

                ws = load_workbook(path, read_only=True)[c.file["sheet"]]
                rows = list(ws.iter_rows(values_only=True))
                assert list(rows[0]) == c.headers
                for row in rows[1:]:
                    rec = dict(zip(c.headers, row, strict=True))
                    if c.feed == "declared":  # the operator's labels, each one its contract recodes
                        assert rec["Indicateur"] in dict(c.column("figure_code").recode) and rec["Mois"] == "2026-03"
                        continue
                    assert rec["Statut"] in ("En cours", "Clôturé")
                    assert isinstance(rec["Date ouverture"], datetime)
                    assert (rec["Date clôture"] is None) == (rec["Statut"] == "En cours")
            elif c.format == "gtfs":
                from ingestion import gtfs

                feed = gtfs.read_feed(path)
                info = feed["feed_info"].row(0, named=True)
                assert info["feed_start_date"] == "20260328" and info["feed_end_date"] == "20260331"
                assert feed["agency"]["agency_timezone"].unique().to_list() == ["Europe/Paris"]
    assert seen == {c.key for c in simulated} and len(seen) == 12


def test_delivery_names_and_times_follow_the_contract(clean: Path) -> None:
    for day in (date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)):
        for operator, feed in (
            ("bus", "ticketing"),
            ("bus", "avl"),
            ("bus", "apc"),
            ("bus", "trips"),
            ("bus", "maintenance"),
            ("parking", "occupancy"),
        ):
            path = clean / operator / feed / contract(operator, feed).file_name(day)
            assert path.exists(), path
            delivered = datetime.fromtimestamp(path.stat().st_mtime)
            assert (delivered.date() - day).days in (0, 1), f"{path.name} delivered {delivered}"


def test_parking_readings_follow_the_local_day_across_dst(clean: Path) -> None:
    def readings(day: str) -> pl.DataFrame:
        return pl.read_csv(
            clean / "parking" / "occupancy" / f"occupation_parcs_{day}.csv",
            separator=";",
            encoding="cp1252",
            infer_schema=False,
        )

    per_park = readings("20260329").group_by("Identifiant").len()["len"].unique().to_list()
    assert per_park == [276]  # 23 hours on 29 March 2026
    times = readings("20260329").filter(pl.col("Identifiant") == pl.first("Identifiant"))["Horodatage"].to_list()
    assert "29/03/2026 02:30:00" not in times and "29/03/2026 03:00:00" in times
    assert readings("20260330").group_by("Identifiant").len()["len"].unique().to_list() == [288]


# -- ground truth ---------------------------------------------------------------------------
def test_truth_loads_are_conserved_and_within_capacity(clean: Path) -> None:
    sv = pl.read_parquet(clean / "truth" / "stop_visits" / "**" / "*.parquet", hive_partitioning=False)
    sv = sv.sort("service_date", "trip_id", "stop_sequence")
    check = sv.with_columns(
        (pl.col("boardings") - pl.col("alightings")).cum_sum().over("service_date", "trip_id").alias("cum"),
        pl.col("stop_sequence").rank("ordinal").over("service_date", "trip_id").alias("pos"),
        pl.len().over("service_date", "trip_id").alias("n"),
    )
    assert (check["cum"] == check["load"]).all(), "load = cumulative boardings - alightings"
    assert (check["load"] >= 0).all()
    assert check.filter(pl.col("pos") == pl.col("n"))["load"].max() == 0, "empty at the terminus"
    assert (check["load"] <= check["capacity"]).all(), "never above the vehicle's capacity"
    assert check.filter(~pl.col("is_served"))["boardings"].sum() == 0
    assert check.filter(~pl.col("is_served"))["alightings"].sum() == 0
    assert (check["validated_boardings"] <= check["boardings"]).all()


def test_truth_journeys_go_downstream_and_chain(clean: Path) -> None:
    st = pl.read_parquet(clean / "truth" / "stages" / "**" / "*.parquet", hive_partitioning=False)
    assert st.height > 10_000
    assert (st["alight_stop_sequence"] > st["board_stop_sequence"]).all()
    assert (st["alighted_at"] > st["boarded_at"]).all()
    ordered = st.sort("service_date", "rider_id", "boarded_at").with_columns(
        pl.col("alighted_at").shift(1).over("service_date", "rider_id").alias("prev_alight")
    )
    later = ordered.filter(pl.col("prev_alight").is_not_null())
    assert (later["boarded_at"] > later["prev_alight"]).all(), "a rider boards after getting off"
    sv = pl.read_parquet(clean / "truth" / "stop_visits" / "**" / "*.parquet", hive_partitioning=False)
    per_row = st.group_by("service_date", "trip_id", "board_stop_sequence").len()
    joined = sv.join(
        per_row,
        left_on=["service_date", "trip_id", "stop_sequence"],
        right_on=["service_date", "trip_id", "board_stop_sequence"],
        how="left",
    )
    assert (joined["len"].fill_null(0) == joined["boardings"]).all(), "stages and stop visits agree"
    # fraudsters never validate, and every validated stage has a card or a paper ticket
    assert st.filter(pl.col("is_fraud"))["is_validated"].sum() == 0


def test_validations_match_truth_counts(clean: Path) -> None:
    """Delivered validations = validated stages plus the documented double validations."""
    st = pl.read_parquet(clean / "truth" / "stages" / "**" / "*.parquet", hive_partitioning=False)
    validated = st.filter(pl.col("service_date") == date(2026, 3, 30))["is_validated"].sum()
    rows = check_csv(clean / "bus" / "ticketing" / "VALIDATIONS_20260330.csv", "bus", "ticketing")
    assert validated <= rows <= validated * 1.02


def test_fleet_and_maintenance_truth(clean: Path) -> None:
    vd = pl.read_parquet(clean / "truth" / "vehicle_days" / "**" / "*.parquet", hive_partitioning=False)
    daily = vd.group_by("service_date").agg(
        pl.col("is_available_for_service").sum(), pl.len(), pl.col("vehicles_required_at_peak").first()
    )
    assert (daily["is_available_for_service"] <= daily["len"]).all()
    assert (daily["vehicles_required_at_peak"] <= daily["len"]).all()
    trips = pl.read_parquet(clean / "truth" / "trips" / "**" / "*.parquet", hive_partitioning=False)
    assert trips.filter(pl.col("is_cancelled"))["cancel_cause"].null_count() == 0
    assert trips.filter(~pl.col("is_cancelled"))["vehicle_id"].null_count() == 0


# -- determinism ----------------------------------------------------------------------------
def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "simulation.json"
    }


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path, clean: Path) -> None:
    run(tmp_path / "again")
    assert _digest(tmp_path / "again") == _digest(clean)
    run(tmp_path / "other", seed=8, days=1)
    a = (clean / "bus" / "ticketing" / "VALIDATIONS_20260328.csv").read_bytes()
    b = (tmp_path / "other" / "bus" / "ticketing" / "VALIDATIONS_20260328.csv").read_bytes()
    assert a != b


# -- faults ---------------------------------------------------------------------------------
def test_every_fault_kind_is_injected_and_recorded(faulty: Path) -> None:
    records = json.loads((faulty / "truth" / "faults.json").read_text())
    kinds = {r["kind"] for r in records}
    assert kinds == set(FAULT_KINDS) - {"dst"}, kinds  # dst is a window rule, checked below
    by_kind = {}
    for r in records:
        by_kind.setdefault(r["kind"], []).append(r)
    ticketing = faulty / "bus" / "ticketing"

    missing = by_kind["missing_day"][0]
    assert not (ticketing / missing["file"]).exists()

    truncated = by_kind["truncated_file"][0]
    data = (ticketing / truncated["file"]).read_bytes()
    assert not data.endswith(b"\r\n"), "the truncated file ends mid-row"
    redelivered = by_kind["redelivery"][0]
    v2 = ticketing / redelivered["file"]
    assert v2.read_bytes().startswith(data[: len(data) - 10]) and len(v2.read_bytes()) > len(data)
    assert v2.stat().st_mtime > (ticketing / truncated["file"]).stat().st_mtime

    drift = by_kind["schema_drift"][0]
    day = date.fromisoformat(drift["service_date"])
    header = (ticketing / contract("bus", "ticketing").file_name(day)).read_bytes().split(b"\r\n")[0].decode("cp1252")
    assert "Code_Arret" in header and "Zone tarifaire" in header and header.index("Sens") < header.index("Ligne")

    dup = by_kind["duplicate_delivery"][0]
    avl = faulty / "bus" / "avl"
    original = contract("bus", "avl").file_name(date.fromisoformat(dup["service_date"]))
    assert (avl / dup["file"]).read_bytes() == (avl / original).read_bytes()

    late = by_kind["late_delivery"][0]
    late_at = datetime.fromtimestamp((faulty / "bus" / "apc" / late["file"]).stat().st_mtime)
    assert (late_at.date() - date.fromisoformat(late["service_date"])).days >= 3

    enc = by_kind["wrong_encoding"][0]
    raw = (faulty / "parking" / "occupancy" / enc["file"]).read_bytes()
    assert "Capacité".encode() in raw and "Capacité".encode("cp1252") not in raw

    text = "".join(p.read_bytes().decode("cp1252") for p in sorted(ticketing.glob("*.csv")))
    assert "25:61:00" in text and "1,6O€" in text and "99990001" in text
    skew = by_kind["clock_skew"][0]
    assert not skew["detail"].endswith(": 0 validations +240 s")
    apc = pl.concat([pl.read_csv(p) for p in sorted((faulty / "bus" / "apc").glob("*.csv"))])
    assert apc["boardings"].min() < 0
    avl_rows = pl.concat([pl.read_ndjson(p) for p in sorted(avl.glob("*.jsonl"))])
    assert "9999" in avl_rows["vehicule"].to_list()
    occ = pl.concat(
        [
            pl.read_csv(
                p, separator=";", encoding="utf8-lossy" if p.name == enc["file"] else "cp1252", infer_schema=False
            ).select(
                pl.nth(0).alias("id"),
                pl.nth(4).cast(pl.Int64).alias("occupied"),
                pl.nth(3).cast(pl.Int64).alias("capacity"),
            )
            for p in sorted((faulty / "parking" / "occupancy").glob("*.csv"))
        ]
    )
    assert (occ["occupied"] > occ["capacity"]).any()
    stuck = by_kind["stuck_sensor"][0]
    assert "from 09:00 to 15:00" in stuck["detail"]


def test_dst_fault_refuses_a_window_without_dst(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DST change day"):
        run(tmp_path, "dst", days=2, start=date(2026, 5, 4))


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault 'gremlins'"):
        parse_faults("gremlins")
    assert set(parse_faults("default")) < set(parse_faults("all"))


# -- other networks -------------------------------------------------------------------------
def test_runs_on_a_second_real_feed(tmp_path: Path) -> None:
    """NYC subway excerpt: rail, no block_id (blocks scheduled), parent stations, transfers."""
    assert NYC.exists(), "make install fetches the second real feed into .cache/"
    summary = run(tmp_path, None, days=2, start=date(2026, 6, 1), network=NYC)
    assert summary["network_name"] == "nyc_subway_gtfs"
    day = summary["days"][0]
    assert day["trips_scheduled"] > 500 and day["validations"] > 10_000
    sv = pl.read_parquet(tmp_path / "truth" / "stop_visits" / "**" / "*.parquet", hive_partitioning=False)
    assert (sv["load"] <= sv["capacity"]).all() and (sv["load"] >= 0).all()
    assert check_csv(tmp_path / "bus" / "ticketing" / "VALIDATIONS_20260601.csv", "bus", "ticketing") > 0


def test_bad_network_is_a_clear_error(tmp_path: Path) -> None:
    from citylake.core.errors import DataError

    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "stops.txt").write_text("stop_id,stop_lat,stop_lon\n1,0,0\n")
    with pytest.raises(DataError, match="missing routes.txt, trips.txt, stop_times.txt"):
        run(tmp_path / "out", network=tmp_path / "feed")
