"""The standard formats' readers on the real samples of ../shared/realdata (counts, first and last
times in UTC, ids as delivered), and on the bad inputs each must refuse with a clear reason."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import UTC, date, datetime

import polars as pl
import pytest

from ingestion.contracts import Contract
from ingestion.feeds import Context, Refs, dataset_of, to_staged
from ingestion.parsing import Refused, parse
from ingestion.standards import datex2, geo, gtfs_rt, siri, tides
from tests.conftest import require_shared
from tests.support.city import ingested, onboard

TU = "realdata/standards/gtfsrt_tripupdates_edmonton_ets_2024-03-12T1837Z.pb"
VP = "realdata/standards/gtfsrt_vehiclepositions_edmonton_ets_2024-03-12T1837Z.pb"
SIRI_VM = "realdata/standards/siri_vm_soap_nice_rla_2021-08-02.xml"
DATEX = "realdata/standards/datex2_parking_status_aachen_2025-02-07.xml"
TIDES_VL = "realdata/ridership/tides_metrotransit_mn_vehicle_locations.csv"
EDMONTON = "America/Edmonton"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- GTFS-RT ------------------------------------------------------------------------------------
def test_gtfs_rt_trip_updates_of_edmonton() -> None:
    data = require_shared(TU).read_bytes()
    snaps = gtfs_rt.snapshots(data, "tu.pb")
    assert len(snaps) == 1 and snaps[0].at == utc(2024, 3, 12, 18, 37, 8)
    p = gtfs_rt.observed_passages(snaps, EDMONTON)
    assert p.height == 20_378  # every StopTimeUpdate, none dropped
    counts = dict(p.group_by("observation").len().iter_rows())
    assert counts == {"recorded": 2_314, "predicted": 17_995, "skipped": 69}
    # one snapshot: only what is already past is a passage; the rest says why it is not
    assert p.filter(pl.col("is_valid")).height == 2_314
    assert p.filter(pl.col("observation") == "skipped")["invalid_reason"].unique().to_list() == [
        "stop skipped: not served"
    ]
    recorded = p.filter(pl.col("is_valid"))
    assert recorded["service_date"].unique().to_list() == [date(2024, 3, 12)]  # start_date, local day
    latest = recorded.select(pl.max_horizontal("actual_arrival_at", "actual_departure_at").max()).item()
    assert latest <= utc(2024, 3, 12, 18, 37, 8)
    assert recorded["trip_id"].n_unique() > 100 and recorded["stop_id"].null_count() == 0


def test_gtfs_rt_vehicle_positions_of_edmonton() -> None:
    v = gtfs_rt.vehicle_positions(gtfs_rt.snapshots(require_shared(VP).read_bytes(), "vp.pb"), EDMONTON)
    assert v.height == 354 and v["is_valid"].all()
    assert v["heading"].is_not_null().sum() == 268 and v["speed"].is_not_null().sum() == 214
    assert v["stop_id"].null_count() == 354 and v["current_status"].null_count() == 354
    assert (v["age_s"] > 120).sum() == 2
    assert v["event_timestamp"].max() == utc(2024, 3, 12, 18, 37, 6)
    first = v.row(0, named=True)
    assert 53 < first["latitude"] < 54 and -114 < first["longitude"] < -113  # Edmonton


def test_gtfs_rt_a_batch_of_snapshots_dates_each_passage_once() -> None:
    """An hourly zip of two polls: a stop predicted in the first and gone from the second is
    the last prediction; one recorded in both is counted once, with the newer word."""
    from google.transit import gtfs_realtime_pb2 as g

    def snapshot(at: int, stops: list[tuple[int, int]]) -> bytes:
        feed = g.FeedMessage()
        feed.header.gtfs_realtime_version = "2.0"
        feed.header.timestamp = at
        e = feed.entity.add(id="t1")
        e.trip_update.trip.trip_id = "T1"
        e.trip_update.trip.start_date = "20240312"
        e.trip_update.trip.start_time = "23:50:00"
        for seq, t in stops:
            stu = e.trip_update.stop_time_update.add(stop_sequence=seq, stop_id=f"S{seq}")
            stu.departure.time = t
        return feed.SerializeToString()

    t0 = 1710307800  # 2024-03-13T05:30:00Z, 23:30 on the 12th in Edmonton: the UTC date is not the service day
    batch = io.BytesIO()
    with zipfile.ZipFile(batch, "w") as zf:
        zf.writestr("20240313T053000Z.pb", snapshot(t0, [(1, t0 - 10), (2, t0 + 60), (3, t0 + 600)]))
        zf.writestr("20240313T053200Z.pb.gz", gzip.compress(snapshot(t0 + 120, [(3, t0 + 620)])))
    p = gtfs_rt.observed_passages(gtfs_rt.snapshots(batch.getvalue(), "batch.zip"), EDMONTON)
    by_seq = {r["stop_sequence"]: r for r in p.iter_rows(named=True)}
    assert by_seq[1]["observation"] == "recorded" and by_seq[2]["observation"] == "last_prediction"
    assert by_seq[3]["observation"] == "predicted" and not by_seq[3]["is_valid"]
    assert by_seq[3]["actual_departure_at"] == datetime.fromtimestamp(t0 + 620, UTC)  # the newer word
    assert {r["service_date"] for r in p.iter_rows(named=True)} == {date(2024, 3, 12)}  # start_date, not UTC


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b"not protobuf at all", "not a GTFS-Realtime FeedMessage"),
        ("truncated", "truncated or not protobuf"),
        ("version", "gtfs_realtime_version '3.0'"),
        ("differential", "DIFFERENTIAL"),
    ],
)
def test_gtfs_rt_bad_inputs_are_refused_with_their_rule(payload, rule) -> None:
    from google.transit import gtfs_realtime_pb2 as g

    real = require_shared(TU).read_bytes()
    if payload == "truncated":
        payload = real[: len(real) // 2]
    elif payload in ("version", "differential"):
        feed = g.FeedMessage()
        feed.ParseFromString(real)
        if payload == "version":
            feed.header.gtfs_realtime_version = "3.0"
        else:
            feed.header.incrementality = g.FeedHeader.DIFFERENTIAL
        payload = feed.SerializeToString()
    with pytest.raises(Refused, match=rule):
        gtfs_rt.snapshots(payload, "feed.pb")


# -- SIRI -----------------------------------------------------------------------------------------
def test_siri_vm_soap_of_nice() -> None:
    docs = siri.documents(require_shared(SIRI_VM).read_bytes(), "vm.xml")
    assert len(docs) == 1 and docs[0].at == utc(2021, 8, 2, 6, 50, 49, 660000)
    assert docs[0].version == "2.0:FR-IDF-2.4"
    v = siri.vehicle_positions(docs, "Europe/Paris")
    assert v.height == 1
    row = v.row(0, named=True)
    assert row["vehicle_id"] == "RLA290" and row["event_timestamp"] == utc(2021, 8, 2, 6, 50, 27, 733000)
    assert round(row["longitude"], 4) == 7.2762 and round(row["latitude"], 4) == 43.7035  # Lambert-93 → WGS84
    assert row["heading"] == 287.0 and row["trip_id"] == "RLA_Bus:VehicleJourney::2978464:LOC"
    p = siri.observed_passages(docs, "Europe/Paris")
    call = p.row(0, named=True)
    assert p.height == 1 and call["stop_id"] == "RLA_Bus:StopPoint:BP:PASTO8:LOC" and call["stop_sequence"] == 6
    assert call["scheduled_arrival_at"] == utc(2021, 8, 2, 5, 38, 42)
    # expected 08:50:51, 2 s after the response: announced, not yet a passage (ET001: no actuals)
    assert call["observation"] == "predicted" and not call["is_valid"]
    assert call["service_date"] == date(2021, 8, 2)


def _siri_json(wrapped: bool) -> bytes:
    def v(x):
        return {"value": x} if wrapped else x

    journey = {
        "LineRef": v("L1"),
        "DirectionRef": v("aller"),
        "FramedVehicleJourneyRef": {
            "DataFrameRef": v("X:DataFrame::2026-03-10:LOC"),
            "DatedVehicleJourneyRef": v("J1"),
        },
        "VehicleRef": v("V9"),
        "VehicleLocation": {"Longitude": 2.35, "Latitude": 48.85},
        "MonitoredCall": {
            "StopPointRef": v("STIF:StopPoint:Q:41178:"),
            "Order": 4,
            "AimedArrivalTime": "2026-03-10T07:00:00Z",
            "ActualArrivalTime": "2026-03-10T07:02:30Z",
            "ActualDepartureTime": "2026-03-10T07:03:00Z",
        },
    }
    doc = {
        "Siri": {
            "ServiceDelivery": {
                "ResponseTimestamp": "2026-03-10T07:05:00Z",
                "VehicleMonitoringDelivery": [
                    {
                        "VehicleActivity": [
                            {"RecordedAtTime": "2026-03-10T07:04:00Z", "MonitoredVehicleJourney": journey}
                        ]
                    }
                ],
            }
        }
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize("wrapped", [False, True])
def test_siri_lite_json_in_both_shapes(wrapped: bool) -> None:
    docs = siri.documents(_siri_json(wrapped), "vm.json")
    p = siri.observed_passages(docs, "Europe/Paris")
    row = p.row(0, named=True)
    assert row["observation"] == "recorded" and row["is_valid"]
    assert row["actual_arrival_at"] == utc(2026, 3, 10, 7, 2, 30) and row["stop_id"] == "STIF:StopPoint:Q:41178:"
    assert row["service_date"] == date(2026, 3, 10) and row["trip_id"] == "J1"
    v = siri.vehicle_positions(docs, "Europe/Paris")
    assert v["longitude"].to_list() == [2.35] and v["vehicle_id"].to_list() == ["V9"]


ET = """<?xml version="1.0" encoding="UTF-8"?>
<x:Siri xmlns:x="http://www.siri.org.uk/siri" version="2.1">
 <x:ServiceDelivery><x:ResponseTimestamp>2026-03-10T08:00:00+01:00</x:ResponseTimestamp>
  <x:EstimatedTimetableDelivery version="2.1"><x:EstimatedJourneyVersionFrame>
   <x:EstimatedVehicleJourney>
    <x:LineRef>L2</x:LineRef><x:DatedVehicleJourneyRef>J2</x:DatedVehicleJourneyRef>
    <x:OriginAimedDepartureTime>2026-03-10T07:30:00+01:00</x:OriginAimedDepartureTime>
    <x:RecordedCalls><x:RecordedCall><x:StopPointRef>A</x:StopPointRef><x:Order>1</x:Order>
      <x:AimedDepartureTime>2026-03-10T07:30:00+01:00</x:AimedDepartureTime>
      <x:ActualDepartureTime>2026-03-10T07:31:10+01:00</x:ActualDepartureTime></x:RecordedCall></x:RecordedCalls>
    <x:EstimatedCalls><x:EstimatedCall><x:StopPointRef>B</x:StopPointRef><x:Order>2</x:Order>
      <x:AimedArrivalTime>2026-03-10T08:10:00+01:00</x:AimedArrivalTime>
      <x:ExpectedArrivalTime>2026-03-10T08:12:00+01:00</x:ExpectedArrivalTime></x:EstimatedCall>
     <x:EstimatedCall><x:StopPointRef>C</x:StopPointRef><x:Order>3</x:Order>
      <x:ArrivalStatus>cancelled</x:ArrivalStatus></x:EstimatedCall></x:EstimatedCalls>
   </x:EstimatedVehicleJourney>
  </x:EstimatedJourneyVersionFrame></x:EstimatedTimetableDelivery>
 </x:ServiceDelivery>
</x:Siri>"""


def test_siri_et_bare_with_recorded_estimated_and_cancelled_calls() -> None:
    p = siri.observed_passages(siri.documents(ET.encode(), "et.xml"), "Europe/Paris")
    rows = {r["stop_id"]: r for r in p.iter_rows(named=True)}
    assert rows["A"]["observation"] == "recorded" and rows["A"]["actual_departure_at"] == utc(2026, 3, 10, 6, 31, 10)
    assert rows["B"]["observation"] == "predicted" and rows["C"]["observation"] == "skipped"
    assert all(r["service_date"] == date(2026, 3, 10) for r in rows.values())


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b"<Siri xmlns='http://example.org/not-siri'/>", "is neither SIRI"),
        (
            b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body><soap:Fault>"
            b"<faultcode>soap:Server</faultcode><faultstring>RequestorRef unknown</faultstring></soap:Fault>"
            b"</soap:Body></soap:Envelope>",
            "SOAP fault: soap:Server RequestorRef unknown",
        ),
        (ET.replace('version="2.1">', 'version="3.0">', 1).encode(), "SIRI version '3.0'"),
        (ET[:400].encode(), "not well-formed XML"),
        (b'{"Other": {}}', "without a top-level 'Siri'"),
    ],
)
def test_siri_bad_inputs_are_refused_with_their_rule(payload: bytes, rule: str) -> None:
    with pytest.raises(Refused, match=rule):
        siri.documents(payload, "siri.xml")


# -- DATEX II ------------------------------------------------------------------------------------
def test_datex2_parking_status_of_aachen() -> None:
    o = datex2.parking_status(require_shared(DATEX).read_bytes(), "aachen.xml")
    assert o.height == 17  # every parkingRecordStatus
    p1 = o.filter(pl.col("facility_id") == "P1").row(0, named=True)
    assert p1["observed_at"] == utc(2025, 2, 7, 19, 5, 34, 176000) and p1["is_valid"]
    assert (p1["capacity"], p1["occupied"], p1["free"], p1["occupancy_rate_pct"]) == (560, 148, 412, 26.43)
    stale = o.filter(pl.col("facility_id") == "P5").row(0, named=True)
    assert not stale["is_valid"] and stale["invalid_reason"].startswith("stale: reading of 2025-02-03")
    assert o["published_at"].unique().to_list() == [utc(2025, 2, 7, 19, 11, 0, 95000)]
    unknown = o.filter(pl.col("site_status") == "unknown")
    assert unknown.height == 2 and not unknown["is_valid"].any()
    # four records are more than an hour older than the publication: P5 and P13 (unknown, capacity
    # 0) and P14 from days before, P16 from that morning
    stale = o.filter(pl.col("invalid_reason").str.starts_with("stale"))["facility_id"].sort().to_list()
    assert stale == ["P13", "P14", "P16", "P5"] and o["is_valid"].sum() == 13


V3_TABLE = """<con:payload xmlns:con="http://datex2.eu/schema/3/common" xmlns:prk="http://datex2.eu/schema/3/parking"
 xmlns:loc="http://datex2.eu/schema/3/locationReferencing">
 <prk:parkingTable><prk:parkingRecord id="FR-34172-P-001">
  <prk:parkingName><con:values><con:value lang="fr">Comédie</con:value></con:values></prk:parkingName>
  <prk:parkingNumberOfSpaces>1200</prk:parkingNumberOfSpaces>
  <prk:parkingLocation><loc:pointByCoordinates><loc:pointCoordinates>
   <loc:latitude>43.6086</loc:latitude><loc:longitude>3.8797</loc:longitude>
  </loc:pointCoordinates></loc:pointByCoordinates></prk:parkingLocation>
 </prk:parkingRecord></prk:parkingTable></con:payload>"""


def test_datex2_v3_parking_table_is_the_register() -> None:
    f = datex2.parking_table(V3_TABLE.encode(), "table.xml")
    assert f.select("facility_id", "facility_name", "capacity", "lat", "lon").rows() == [
        ("FR-34172-P-001", "Comédie", 1200, 43.6086, 3.8797)
    ]


def test_datex2_bad_inputs_are_refused_with_their_rule() -> None:
    with pytest.raises(Refused, match="is not DATEX II"):
        datex2.parking_status(b"<root xmlns='urn:x'/>", "x.xml")
    with pytest.raises(Refused, match="no parkingRecordStatus"):
        datex2.parking_status(V3_TABLE.encode(), "x.xml")
    with pytest.raises(Refused, match="not well-formed"):
        datex2.parking_status(require_shared(DATEX).read_bytes()[:5000], "cut.xml")


# -- TIDES ------------------------------------------------------------------------------------------
def test_tides_vehicle_locations_of_metro_transit_with_pre_1_0_names() -> None:
    frame, warnings = tides.read(
        "vehicle_locations", require_shared(TIDES_VL).read_bytes(), "vl.csv", "America/Chicago"
    )
    assert frame.height == 1_000 and frame["is_valid"].all() and warnings == []
    assert frame["vehicle_id"].n_unique() == 391
    assert frame["service_date"].unique().to_list() == [date(2022, 9, 20)]  # "date" read as service_date
    assert frame["event_timestamp"].min() == utc(2022, 9, 20, 7, 59, 37, 527000)
    assert frame["trip_id"].null_count() == 1_000 and frame["trip_stop_sequence"].null_count() == 1_000


def test_tides_refuses_a_table_without_its_required_columns() -> None:
    with pytest.raises(Refused, match=r"required column\(s\) \['vehicle_id'\]"):
        tides.read("vehicle_locations", b"location_ping_id,timestamp\n1,2022-01-01T00:00:00Z\n", "x.csv", "UTC")


# -- coordinates -------------------------------------------------------------------------------------
def test_lambert_93_and_lambert_2_etendu_to_wgs84() -> None:
    lon, lat = geo.to_wgs84(1044593, 6298716, "EPSG:2154")
    assert (round(lon, 4), round(lat, 4)) == (7.2762, 43.7035)  # Nice, as the SIRI sample says
    lon2, lat2 = geo.to_wgs84(*geo_point_27572(lon, lat), "urn:ogc:def:crs:EPSG::27572")
    assert abs(lon2 - lon) < 1e-7 and abs(lat2 - lat) < 1e-7
    with pytest.raises(ValueError, match="names no EPSG code"):
        geo.to_wgs84(1, 2, "lambert")


def geo_point_27572(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:27572", always_xy=True).transform(lon, lat)


# -- through the extract contract, into the staged vocabulary ------------------------------------
def _contract(fmt: str, records: str, dataset: str, builder: str) -> Contract:
    return Contract(
        operator="city",
        feed=f"{fmt}_{records}",
        version=1,
        title="test",
        personal_data=False,
        file={"format": fmt, "records": records, "file_name": "x", "partition_from": "rows"},
        group="transit",
        staged={"dataset": dataset, "partition": "service_date", "builder": builder},
    )


def test_datex2_status_lands_as_parking_occupancy_rows_dated_by_their_local_day() -> None:
    c = _contract("datex2", "parking_status", "parking_occupancy", "parking_occupancy_status")
    parsed = parse(c, require_shared(DATEX).read_bytes(), "aachen.xml", "Europe/Berlin")
    staged = to_staged(dataset_of(c), parsed.frame, Context("city", "sha", date(2025, 2, 7), "Europe/Berlin", Refs()))
    assert staged.height == 17 and staged["is_valid"].sum() == 13
    assert staged.columns[:4] == ["operator", "service_date", "source_sha256", "source_row"]
    assert staged.filter(pl.col("facility_id") == "P5")["service_date"].to_list() == [date(2025, 2, 3)]


def test_gtfs_rt_passages_land_as_stop_visits_with_the_gtfs_schedule() -> None:
    c = _contract("gtfs_rt", "passages", "stop_visits", "stop_visits_observed")
    parsed = parse(c, require_shared(TU).read_bytes(), "tu.pb", EDMONTON)
    first = parsed.frame.filter(pl.col("is_valid")).row(0, named=True)
    schedule = pl.DataFrame(
        {
            "trip_id": [first["trip_id"]],
            "stop_sequence": [first["stop_sequence"]],
            "stop_id": [first["stop_id"]],
            "route_short_name": ["110X"],
            "direction_id": [0],
            "arrival_secs": [8 * 3600],
            "departure_secs": [8 * 3600 + 30],
        }
    )
    refs = Refs(stops={first["stop_id"]}, gtfs_version="v1", schedule_loader=lambda: schedule)
    staged = to_staged(dataset_of(c), parsed.frame, Context("city", "sha", date(2024, 3, 12), EDMONTON, refs))
    row = staged.filter(pl.col("source_row") == first["source_row"]).row(0, named=True)
    assert row["is_valid"] and row["route_short_name"] == "110X"
    # 08:00:30 after the service day start (noon - 12 h, MDT) of 2024-03-12
    assert row["schedule_departure_time"] == utc(2024, 3, 12, 14, 0, 30)
    others = staged.filter(pl.col("trip_id") != first["trip_id"])
    assert not others["is_valid"].any()
    assert others["invalid_reason"].str.contains("not in GTFS version v1|only predicted|skipped").all()


# -- onboarding a standard-format operator with YAML only -------------------------------------------
CITY_CONTRACT = """\
operator: aachen
feed: occupancy
version: 1
title: Occupation des parkings en temps réel (DATEX II ParkingStatusPublication)
personal_data: false
group: parking
reference: false
staged: {dataset: parking_occupancy, partition: service_date, builder: parking_occupancy_status}
file:
  format: datex2
  records: parking_status
  file_name: "parking_status.xml"
  partition_from: rows     # a status snapshot (or a batch of them) dates each reading by its local day
  stale_after_min: 60
  deadline: "D+1 06:00 Europe/Paris"
notes: Real-time car-park status polled from the city's DATEX II endpoint.
"""


def test_a_datex2_operator_is_onboarded_with_yaml_only(tmp_path, monkeypatch, capsys) -> None:
    """The city's own folder (CITYLAKE_CONFIG_DIR) holds operators.yaml and the contract: no
    Python changes, and the night's ingestion stages the operator's readings."""
    from citylake.cli import main
    from ingestion import registry

    operator = (
        "  aachen:\n    name: Parkings (DATEX II)\n    drop: {type: root, path: aachen}\n    feeds: [occupancy]\n"
    )
    sample = require_shared(DATEX).read_bytes()
    settings = onboard(
        tmp_path,
        monkeypatch,
        operator,
        {"aachen__occupancy.v1.yaml": CITY_CONTRACT},
        {"aachen/occupancy/parking_status.xml": sample},
    )
    drop = tmp_path / "drop" / "aachen" / "occupancy"

    assert "aachen" in registry.operators() and registry.feed_group("aachen", "occupancy") == "parking"
    staged = ingested(settings, "aachen", "parking_occupancy")
    staged = staged.filter(pl.col("operator") == "aachen")
    assert staged.height == 17 and staged["is_valid"].sum() == 13
    assert sorted(staged["service_date"].unique().to_list()) == [date(2025, 2, 3), date(2025, 2, 4), date(2025, 2, 7)]

    # before go-live, the operator's sample is checked against the contract, row by row
    code = main(["contract", "check", str(drop / "parking_status.xml"), "--contract", "aachen/occupancy"])
    out = capsys.readouterr().out
    assert code == 1 and "staged rows: 17 = 13 valid + 4 invalid" in out and "stale: reading of" in out
    monkeypatch.delenv("CITYLAKE_CONFIG_DIR")
    assert "aachen" not in registry.operators()  # the shipped registry again


# -- NeTEx France -------------------------------------------------------------------------------------
NETEX = "realdata/standards/netex_fr_pabmar_finistere_maritime_2024-07-04.zip"


def test_netex_france_offer_of_finistere_becomes_the_gtfs_tables() -> None:
    from ingestion import gtfs
    from ingestion.standards import netex

    feed = netex.read(require_shared(NETEX).read_bytes(), "netex.zip")
    assert feed.problems == []
    quays = feed["stops"].filter(pl.col("location_type") == "0")
    assert quays.height == 7 and feed["stops"].filter(pl.col("location_type") == "1").height == 7
    assert quays["parent_station"].null_count() == 0  # every quay under its stop place
    assert "FR:29003:Quay:7:PABMAR" in quays["stop_id"].to_list()  # ids kept opaque
    assert feed["routes"].height == 23 and set(feed["routes"]["route_type"]) == {"4"}  # ferries
    assert feed["trips"].height == 2_977 and feed["stop_times"].height == 5_954
    # 46 passing times past midnight (DepartureDayOffset=1) become GTFS times past 24:00
    past_midnight = feed["stop_times"].filter(pl.col("departure_time").str.slice(0, 2).cast(pl.Int32) >= 24)
    assert past_midnight.height == 46
    assert set(feed["trips"]["direction_id"].drop_nulls()) <= {"0", "1"}
    dates = gtfs.service_dates(feed)
    assert min(dates) == date(2024, 7, 4) and max(dates) == date(2024, 12, 31)
    assert feed["agency"]["agency_timezone"].to_list() == ["Europe/Paris"]
    lon, lat = quays.filter(pl.col("stop_id") == "FR:29003:Quay:7:PABMAR").select("stop_lon", "stop_lat").row(0)
    assert abs(float(lon) + 4.55491) < 1e-4 and abs(float(lat) - 48.006) < 1e-3  # Audierne


def test_netex_bad_inputs_are_refused_with_their_rule() -> None:
    from ingestion.standards import netex

    with pytest.raises(Refused, match="is not a NeTEx PublicationDelivery"):
        netex.read(b"<PublicationDelivery xmlns='urn:other'/>", "x.xml")
    only_stops = io.BytesIO()
    with zipfile.ZipFile(require_shared(NETEX)) as src, zipfile.ZipFile(only_stops, "w") as dst:
        dst.writestr("Arrets.xml", src.read("Arrets.xml"))
    with pytest.raises(Refused, match="no ServiceJourney"):
        netex.read(only_stops.getvalue(), "arrets.zip")


def test_a_netex_network_is_onboarded_with_yaml_only(tmp_path, monkeypatch) -> None:
    """A network that publishes no GTFS: its NeTEx offer is staged as the GTFS tables, one
    version valid over the offer's dates, which AVL and ticketing rows are then checked against."""
    from citylake.core.storage import open_storage
    from ingestion.run import ingest

    settings = onboard(
        tmp_path,
        monkeypatch,
        "  pabmar:\n    name: Liaisons maritimes\n    drop: {type: root, path: pabmar}\n    feeds: [offer]\n",
        {
            "pabmar__offer.v1.yaml": "operator: pabmar\nfeed: offer\nversion: 1\n"
            "title: Offre théorique NeTEx profil France\npersonal_data: false\ngroup: transit\nreference: true\n"
            "staged: {dataset: gtfs_feed_versions, partition: feed_version, builder: gtfs}\n"
            "file: {format: netex, file_name: 'offre_netex.zip', partition_from: delivered}\n"
        },
        {"pabmar/offer/offre_netex.zip": require_shared(NETEX).read_bytes()},
    )
    drop = tmp_path / "drop" / "pabmar" / "offer"
    report = ingest(settings, operator="pabmar", progress=False)
    assert report.ok, report.lines()
    storage = open_storage(settings)
    versions = [i.key for i in storage.list("staged/gtfs_feed_versions/")]
    assert len(versions) == 1
    v = pl.read_parquet(io.BytesIO(storage.get_bytes(versions[0])))
    assert v.select("valid_from", "valid_to").row(0) == (date(2024, 7, 4), date(2024, 12, 31))
    version = v["feed_version"][0]
    trips = pl.read_parquet(io.BytesIO(storage.get_bytes(f"staged/gtfs_trips/feed_version={version}/part-0.parquet")))
    assert trips.height == 2_977 and set(trips["operator"]) == {"pabmar"}

    from citylake.cli import main

    assert main(["contract", "check", str(drop / "offre_netex.zip"), "--contract", "pabmar/offer"]) == 0


# -- a producer's ids → the network's (file.ids) ---------------------------------------------------
def test_ids_rules_map_a_producers_ids_and_keep_those_that_do_not_follow_them() -> None:
    from ingestion.standards import ids

    frame = pl.DataFrame(
        {
            "stop_id": ["STIF:StopPoint:Q:1239:", "21240", None],
            "trip_id": ["FR:SIM:ServiceJourney:T1-42:", "other", "FR:SIM:ServiceJourney::"],
            "vehicle_id": ["7", "8", "9"],
        }
    )
    spec = {
        "stop": {"pattern": r"^STIF:StopPoint:Q:(?P<id>\d+):$", "offset": 20000, "add_prefix": "TUB:"},
        "trip": {"pattern": "^FR:SIM:ServiceJourney:(?P<id>.+):$"},
    }
    ids.check(spec, "test")
    out = ids.apply(frame, spec)
    # the STIF ref is cut, shifted by +20000 and prefixed; an id the pattern does not match is kept
    assert out["stop_id"].to_list() == ["TUB:21239", "21240", None]
    assert out["trip_id"].to_list() == ["T1-42", "other", "FR:SIM:ServiceJourney::"]
    assert out["vehicle_id"].to_list() == ["7", "8", "9"]  # no rule for vehicles: untouched


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"quay": {"pattern": "x"}}, "kind 'quay' is not one of"),
        ({"stop": {"regex": "x"}}, "keys among"),
        ({"stop": {"pattern": "(unclosed"}}, "not a regular expression"),
        ({"stop": {"offset": "20000"}}, "offset must be an integer"),
    ],
)
def test_ids_rules_that_cannot_work_are_refused_naming_the_rule(spec, message) -> None:
    from ingestion.standards import ids

    with pytest.raises(ValueError, match=message):
        ids.check(spec, "extract contract x/y v1")
