"""Onboarding vendors with YAML only (the city's folder, no Python): an APC vendor with another
layout, another encoding, times in seconds after the service day's start and its own stop codes;
a second ticketing vendor whose codes are recoded to the staged vocabulary."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from ingestion.contracts import load_file
from ingestion.feeds import Context, Refs, dataset_of, staging_warnings, to_staged
from ingestion.parsing import parse
from tests.support.city import ingested, onboard

APC_CONTRACT = """\
operator: apcvendor
feed: apc
version: 1
title: Comptages APC (autre fournisseur)
personal_data: false
group: transit
reference: false
staged: {dataset: passenger_events, partition: service_date, builder: passenger_events}
file:
  format: csv
  file_name: "comptages_{service_date:%Y%m%d}.txt"
  encoding: iso-8859-15
  delimiter: "|"
  line_terminator: "\\n"
  decimal_separator: ","
  header: true
  deadline: "D+1 06:00 Europe/Paris"
columns:
  - {name: "Code arrêt", canonical: stop_id, type: string, offset: -20000}   # stop 21239 is GTFS 1239
  - {name: "Course", canonical: trip_id, type: string, add_prefix: "RLA:"}
  - {name: "Rang", canonical: stop_sequence, type: integer}
  - {name: "Véhicule", canonical: vehicle_id, type: string, strip_prefix: "V"}
  - {name: "Heure (s)", canonical: actual_arrival_at, type: seconds_after_midnight}
  - {name: "Montées", canonical: boardings, type: integer, min: 0}
  - {name: "Descentes", canonical: alightings, type: integer, min: 0}
"""

APC_FILE = (
    "Code arrêt|Course|Rang|Véhicule|Heure (s)|Montées|Descentes\n"
    "21239|T1|1|V290|27000|3|0\n"
    "21240|T1|2|V290|27300,5|2|1\n"
    "21241|T1|3|V290|90000|0|-4\n"  # 25:00, past midnight; a negative count
).encode("iso-8859-15")


def test_an_apc_vendor_with_its_own_layout_encoding_times_and_codes(tmp_path, monkeypatch) -> None:
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  apcvendor:\n    name: APC vendor\n    drop: {type: root, path: apcvendor}\n    feeds: [apc]\n",
        {"apcvendor__apc.v1.yaml": APC_CONTRACT},
        {"apcvendor/apc/comptages_20260330.txt": APC_FILE},
    )
    staged = ingested(settings, "apcvendor", "passenger_events").sort("source_row")
    boardings = staged.filter(pl.col("event_type") == "boarding")
    assert boardings["stop_id"].to_list() == ["1239", "1240", "1241"]
    assert set(staged["trip_id"]) == {"RLA:T1"} and set(staged["vehicle_id"]) == {"290"}
    # 27000 s after the start of 2026-03-30 (local noon - 12 h, CEST): 07:30 local, 05:30 UTC
    assert boardings["event_timestamp"].to_list()[:2] == [
        datetime(2026, 3, 30, 5, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 5, 35, 0, 500000, tzinfo=UTC),
    ]
    assert boardings["event_timestamp"][2] == datetime(2026, 3, 30, 23, 0, tzinfo=UTC)  # 25:00 local
    assert set(staged["service_date"]) == {date(2026, 3, 30)}
    bad = staged.filter(~pl.col("is_valid"))["invalid_reason"].unique().to_list()
    assert bad == ["column 'Descentes': '-4' is below 0"]


TICKETING_CONTRACT = """\
operator: tickets2
feed: ticketing
version: 1
title: Validations (second vendor)
personal_data: true
group: transit
reference: false
staged: {dataset: fare_transactions, partition: service_date, builder: fare_transactions}
file:
  format: csv
  file_name: "tx_{service_date:%Y-%m-%d}.csv"
  encoding: utf-8
  delimiter: ","
  line_terminator: "\\n"
  decimal_separator: "."
  header: true
columns:
  - {name: ts, canonical: validated_at, type: datetime_local, format: "%Y-%m-%d %H:%M:%S"}
  - {name: card, canonical: card_serial, type: string, personal: true}
  - {name: media, canonical: medium_type, type: enum, values: ["Carte", "Ticket papier"],
     recode: {CARD: Carte, PAPER: Ticket papier}}
  - {name: product, canonical: fare_product, type: string}
  - {name: kind, canonical: validation_type, type: enum, values: ["Validation", "Correspondance"],
     recode: {ENTRY: Validation, TRANSFER: Correspondance}}
  - {name: line, canonical: route_short_name, type: string}
  - {name: dir, canonical: direction, type: enum, values: ["Aller", "Retour"], recode: {"0": Aller, "1": Retour}}
  - {name: stop, canonical: stop_id, type: string, required: false, strip_prefix: "STOP-"}
  - {name: bus, canonical: vehicle_id, type: string}
  - {name: device, canonical: validator_id, type: string}
  - {name: amount, canonical: amount_eur, type: decimal}
"""

TICKETING_FILE = (
    "ts,card,media,product,kind,line,dir,stop,bus,device,amount\n"
    "2026-03-30 07:31:02,123456789012,CARD,Abonnement mensuel,ENTRY,A,0,STOP-1239,290,V1,0.00\n"
    "2026-03-30 07:40:10,123456789012,CARD,Abonnement mensuel,TRANSFER,B,1,,291,V7,0.00\n"
    "2026-03-30 07:41:00,P000000001,PAPER,Ticket unité,ENTRY,B,2,STOP-1240,291,V7,1.60\n"
).encode()


def test_every_column_marked_personal_is_pseudonymised_whatever_its_name_and_purged_by_the_key_builder(
    tmp_path, monkeypatch
) -> None:
    """Issue #30, part 2: a column the contract marks ``personal: true`` (here the validator, as a
    city that treats device ids as personal would) is staged as its keyed pseudonym, never its
    value; a contract that marks a column personal without ``personal_data`` is refused when read;
    and the RGPD purge finds the raw file where ingestion landed it (both through the key builder:
    a layout change that the purge missed would leave the file and fail here)."""
    from citylake.core.storage import open_storage
    from ingestion.retention import purge_personal_raw

    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "onboarding-test-pseudonym-key-0123456789")
    marked = TICKETING_CONTRACT.replace(
        "{name: device, canonical: validator_id, type: string}",
        "{name: device, canonical: validator_id, type: string, personal: true}",
    )
    assert marked != TICKETING_CONTRACT
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  tickets2:\n    name: Second ticketing vendor\n    drop: {type: root, path: tickets2}\n"
        "    feeds: [ticketing]\n",
        {"tickets2__ticketing.v1.yaml": marked},
        {"tickets2/ticketing/tx_2026-03-30.csv": TICKETING_FILE},
    )
    staged = ingested(settings, "tickets2", "fare_transactions").sort("source_row")
    devices = staged["device_id"].to_list()  # the validator, staged as device_id
    assert not {"V1", "V7"} & set(devices) and all(len(d) == 32 for d in devices[:2])
    assert devices[0] != devices[1] and devices[2] is None  # the invalid row's values withheld
    storage = open_storage(settings)
    landed = [i.key for i in storage.list("raw/") if "operator=tickets2" in i.key]
    assert len(landed) == 1
    record = purge_personal_raw(storage, settings, today=date(2030, 1, 1))
    assert landed[0] in {e["key"] for e in record["purged"]} and not storage.exists(landed[0])
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(marked.replace("personal_data: true", "personal_data: false"), encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"columns \['card', 'device'\] are personal: the contract must say personal_data"
    ):
        load_file(wrong)


def test_a_second_ticketing_vendor_recoded_to_the_staged_vocabulary(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "onboarding-test-pseudonym-key-0123456789")
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  tickets2:\n    name: Second ticketing vendor\n    drop: {type: root, path: tickets2}\n"
        "    feeds: [ticketing]\n",
        {"tickets2__ticketing.v1.yaml": TICKETING_CONTRACT},
        {"tickets2/ticketing/tx_2026-03-30.csv": TICKETING_FILE},
    )
    staged = ingested(settings, "tickets2", "fare_transactions").sort("source_row")
    # the third row is invalid (direction '2'): a personal-data feed's invalid row keeps its line,
    # reason and pseudonym, and withholds its values (ingestion.masking)
    assert staged["fare_action"].to_list() == ["tap_on", "transfer", None]
    assert staged["fare_media_type"].to_list() == ["Carte", "Carte", None]
    assert staged["stop_id"].to_list() == ["1239", None, None]
    assert staged["direction_id"].to_list()[:2] == [0, 1]
    assert staged["event_timestamp"][0] == datetime(2026, 3, 30, 5, 31, 2, tzinfo=UTC)
    assert "card_serial" not in staged.columns and "123456789012" not in staged["fare_media_id"].to_list()
    assert staged["is_valid"].to_list() == [True, True, False]  # direction '2' is neither 0 nor 1
    assert staged["invalid_reason"][2] == (
        "column 'dir': '<personal-data feed: value withheld>' is not one of ['Aller', 'Retour']"
    )


WIDE_CONTRACT = """\
operator: wideparks
feed: occupancy
version: 1
title: Places occupées par parc, une colonne par parc (export tableur)
personal_data: false
group: parking
reference: false
staged: {dataset: parking_occupancy, partition: service_date, builder: parking_occupancy}
file:
  format: csv
  file_name: "occupation_{service_date:%Y%m%d}.csv"
  encoding: cp1252
  delimiter: ";"
  line_terminator: "\\r\\n"
  decimal_separator: ","
  header: true
  layout: wide                  # one column per car park, named by its code
  wide: {key: "Parc", value: "Occupées", blank: no_reading}
columns:
  - {name: "Horodatage", canonical: observed_at, type: datetime_local, format: "%d/%m/%Y %H:%M"}
  - {name: "Parc", canonical: facility_id, type: string, add_prefix: "34172-P-"}
  - {name: "Occupées", canonical: occupied, type: integer, min: 0}
"""

WIDE_FILE = (
    "Horodatage;001;002;003\r\n"
    "30/03/2026 08:00;120;;45\r\n"  # car park 002: no reading at 08:00
    "30/03/2026 08:05;121;80;\r\n"
    "30/03/2026 08:10;119;-3;46\r\n"
).encode("cp1252")


def test_a_parking_operator_sending_a_wide_file(tmp_path, monkeypatch) -> None:
    """One column per car park, blanks meaning no reading: one staged reading per filled cell, the
    car park's id from the column header, its capacity (hence free places and rate) from the
    register when the lake has one."""
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  wideparks:\n    name: Parkings (wide export)\n    drop: {type: root, path: wideparks}\n"
        "    feeds: [occupancy]\n",
        {"wideparks__occupancy.v1.yaml": WIDE_CONTRACT},
        {"wideparks/occupancy/occupation_20260330.csv": WIDE_FILE},
    )
    staged = ingested(settings, "wideparks", "parking_occupancy").sort("source_row", "facility_id")
    assert staged.select("source_row", "facility_id", "occupied").rows() == [
        (2, "34172-P-001", 120),
        (2, "34172-P-003", 45),
        (3, "34172-P-001", 121),
        (3, "34172-P-002", 80),
        (4, "34172-P-001", 119),
        (4, "34172-P-002", -3),
        (4, "34172-P-003", 46),
    ]
    assert staged["observed_at"][0] == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert staged.filter(~pl.col("is_valid"))["invalid_reason"].to_list() == ["column 'Occupées': '-3' is below 0"]


def test_a_wide_reading_takes_its_capacity_from_the_register(tmp_path) -> None:
    path = tmp_path / "wideparks__occupancy.v1.yaml"
    path.write_text(WIDE_CONTRACT, encoding="utf-8")
    c = load_file(path)
    parsed = parse(c, WIDE_FILE, "occupation_20260330.csv", "Europe/Paris", date(2026, 3, 30))
    refs = Refs(capacities={"34172-P-001": 200, "34172-P-002": 100})
    staged = to_staged(
        dataset_of(c), parsed.frame, Context("wideparks", "sha", date(2026, 3, 30), "Europe/Paris", refs)
    )
    first = staged.row(0, named=True)
    assert (first["capacity"], first["free"], first["occupancy_rate_pct"]) == (200, 80, 60.0)
    assert staged.filter(pl.col("facility_id") == "34172-P-003")["capacity"].null_count() == 2  # not in the register
    ctx = Context("wideparks", "sha", date(2026, 3, 30), "Europe/Paris", refs)
    assert staging_warnings(dataset_of(c), staged, ctx) == [
        "2 readings of 1 car park(s) in no register as of 2026-03-30 (34172-P-003): staged without capacity, "
        "free places or rate (deliver the register first)"
    ]


def test_a_wide_file_whose_blanks_mean_unchanged(tmp_path) -> None:
    path = tmp_path / "wideparks__occupancy.v1.yaml"
    path.write_text(WIDE_CONTRACT.replace("blank: no_reading", "blank: unchanged"), encoding="utf-8")
    c = load_file(path)
    frame = parse(c, WIDE_FILE, "occupation_20260330.csv", "Europe/Paris").frame
    # 002 is blank at 08:00 before any value (no reading), 003 blank at 08:05 repeats 45
    assert frame.select("source_row", "facility_id", "occupied").rows() == [
        (2, "34172-P-001", 120),
        (2, "34172-P-003", 45),
        (3, "34172-P-001", 121),
        (3, "34172-P-002", 80),
        (3, "34172-P-003", 45),
        (4, "34172-P-001", 119),
        (4, "34172-P-002", -3),
        (4, "34172-P-003", 46),
    ]


def test_a_vendor_file_with_title_lines_and_amounts_in_centimes(tmp_path, monkeypatch) -> None:
    """Lines before the header (``file.skip_rows``) and a unit to convert (``scale``): the rows are
    numbered as lines of the file, so an invalid row names the line a person opens."""
    monkeypatch.setenv("CITYLAKE_PSEUDONYM_KEY", "onboarding-test-pseudonym-key-0123456789")
    contract = (
        TICKETING_CONTRACT.replace("operator: tickets2", "operator: tickets3")
        .replace("  header: true\n", "  header: true\n  skip_rows: 2   # the vendor's title and a blank line\n")
        .replace(
            "{name: amount, canonical: amount_eur, type: decimal}",
            "{name: amount, canonical: amount_eur, type: decimal, scale: 0.01}  # centimes",
        )
    )
    lines = TICKETING_FILE.decode().splitlines(keepends=True)
    body = [lines[0]] + [
        line.rsplit(",", 1)[0] + "," + cents for line, cents in zip(lines[1:], ("0\n", "0\n", "160\n"), strict=True)
    ]
    data = ("Export billettique du 30/03/2026\n\n" + "".join(body)).encode()
    settings = onboard(
        tmp_path,
        monkeypatch,
        "  tickets3:\n    name: Vendor with a title\n    drop: {type: root, path: tickets3}\n    feeds: [ticketing]\n",
        {"tickets3__ticketing.v1.yaml": contract},
        {"tickets3/ticketing/tx_2026-03-30.csv": data},
    )
    staged = ingested(settings, "tickets3", "fare_transactions").sort("source_row")
    assert [float(a) for a in staged["amount"]] == [0.0, 0.0, 1.6]
    assert staged["source_row"].to_list() == [4, 5, 6]  # line 3 is the header
    assert staged["fare_product_id"][0] == "Abonnement mensuel"
    assert staged["invalid_reason"][2] == (
        "column 'dir': '<personal-data feed: value withheld>' is not one of ['Aller', 'Retour']"
    )


def test_an_integer_scaled_off_a_whole_number_is_an_invalid_row_not_a_guess() -> None:
    from ingestion.contracts import Column
    from ingestion.parsing import _typed

    col = Column(name="km", canonical="odometer_km", type="integer", scale=0.001)
    frame = pl.DataFrame({"km": ["12000", "12345", ""]})
    value, extra = _typed(col, "Europe/Paris", ".")
    out = frame.select(value.alias("v"), extra.alias("why"))
    assert out["v"].to_list() == [12, None, None]
    assert out["why"].to_list() == [None, "column 'km': '12345' × 0.001 is not a whole number", None]


def test_a_builder_that_would_stage_the_card_serial_in_clear_fails_its_delivery() -> None:
    """The card serial is the one personal column a builder pseudonymises itself; a builder that
    left it in its output would stage it in clear: to_staged refuses (the delivery is quarantined
    with kind ``internal``, issue #29), whatever the builder."""
    from ingestion.feeds import Dataset
    from ingestion.pseudonym import Pseudonymiser

    rows = pl.DataFrame({"source_row": [2], "card_serial": ["123456789012"], "is_valid": [True]})
    rows = rows.with_columns(pl.lit(None, pl.Utf8).alias("invalid_reason"))
    leaky = Dataset("fare_transactions", "service_date", lambda p, ctx: p, True, "leaky", ("card_serial",))
    ctx = Context("op", "sha", date(2026, 3, 30), "Europe/Paris", Refs(), Pseudonymiser("k" * 32))
    with pytest.raises(
        RuntimeError, match=r"builder leaky would stage personal column\(s\) \['card_serial'\] in clear"
    ):
        to_staged(leaky, rows, ctx)
