"""SIRI read per the profile (issue #28, class 6): StopMonitoring's stop from MonitoringRef, an
expected time is never an observed passage, a ``records`` value that matches nothing in the file
is refused naming what it holds; SIRI-Lite JSON in UTF-16 is read."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ingestion.parsing import Refused
from ingestion.standards import siri

TZ = "Europe/Paris"
AT_0830 = "2026-03-30T08:30:00+02:00"


def _sm(calls: list[dict], at: str = "2026-03-30T09:00:00+02:00") -> bytes:
    visits = [
        {
            "MonitoringRef": {"value": "STIF:StopPoint:Q:1239:"},
            "MonitoredVehicleJourney": {
                "LineRef": {"value": "A"},
                "FramedVehicleJourneyRef": {"DataFrameRef": {"value": "2026-03-30"}, "DatedVehicleJourneyRef": trip},
                "MonitoredCall": call,
            },
        }
        for trip, call in calls
    ]
    doc = {
        "Siri": {
            "ServiceDelivery": {
                "ResponseTimestamp": at,
                "StopMonitoringDelivery": [{"version": "2.0", "MonitoredStopVisit": visits}],
            }
        }
    }
    return json.dumps(doc).encode("utf-8")


def _passages(data: bytes) -> pl.DataFrame:
    return siri.observed_passages(siri.documents(data, "sm.json"), TZ).sort("trip_id")


def test_stop_monitoring_calls_are_at_the_monitored_stop_and_expected_times_are_not_passages() -> None:
    data = _sm(
        [
            # aimed and expected 08:30, no actual time: the timetable, not an observation
            (
                "T1",
                {"AimedArrivalTime": "2026-03-30T08:30:00+02:00", "ExpectedArrivalTime": "2026-03-30T08:30:00+02:00"},
            ),
            # an actual time: recorded
            ("T2", {"AimedArrivalTime": "2026-03-30T08:40:00+02:00", "ActualArrivalTime": "2026-03-30T08:42:00+02:00"}),
        ]
    )
    rows = _passages(data)
    assert rows["stop_id"].to_list() == ["STIF:StopPoint:Q:1239:", "STIF:StopPoint:Q:1239:"]
    t1, t2 = rows.row(0, named=True), rows.row(1, named=True)
    assert t1["observation"] != "recorded"
    assert t2["observation"] == "recorded" and t2["is_valid"]


def test_a_records_value_that_matches_nothing_is_refused_naming_what_the_file_holds() -> None:
    from ingestion.standards import _read

    class Contract:
        key, version, format = "x/avl", 1, "siri"
        file = {"records": "positions"}

    data = _sm([("T1", {"AimedArrivalTime": "2026-03-30T08:30:00+02:00"})])
    with pytest.raises(Refused, match=r"no VehicleActivity; it holds 1 MonitoredStopVisit"):
        _read(Contract(), data, "sm.json", TZ)


def test_siri_lite_json_in_utf16_is_read() -> None:
    data = _sm([("T1", {"AimedArrivalTime": "2026-03-30T08:30:00+02:00"})])
    utf16 = b"\xff\xfe" + data.decode("utf-8").encode("utf-16-le")
    assert _passages(utf16).height == _passages(data).height == 1
