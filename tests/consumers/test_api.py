"""The read-only HTTP API: isolation between operators, clean errors, and its OpenAPI spec fuzzed."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from citylake.consumers.api import TokenRegister, create_app
from citylake.core.errors import CitylakeError
from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from tests.conftest import published_settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    app: object

    def get(self, who: str, url: str, **params):
        return self.client.get(url, params=params, headers={"Authorization": f"Bearer {self.tokens[who]}"})


@pytest.fixture(scope="module")
def api(lake_after_nights, tmp_path_factory) -> Api:
    s = published_settings(lake_after_nights.base)
    register = TokenRegister(tmp_path_factory.mktemp("api") / "api_tokens.json")  # the lake is shared, read-only
    tokens = {
        "analyst": register.add("analyst-1", "analyst"),
        "bus": register.add("bus-1", "operator", "bus"),
        "parking": register.add("parking-1", "operator", "parking"),
    }
    app = create_app(s, open_storage(s), register)
    return Api(TestClient(app, raise_server_exceptions=False), tokens, app)


def test_token_register_keeps_hashes_only(tmp_path, monkeypatch) -> None:
    register = TokenRegister(tmp_path / "tokens.json")
    token = register.add("dsp-bus", "operator", "bus")
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text and len(token) > 40
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    assert register.authenticate(token).operator == "bus"
    assert register.authenticate(token + "x") is None
    with pytest.raises(CitylakeError, match="needs --operator"):
        register.add("x", "operator", "nobody")
    with pytest.raises(CitylakeError, match="exists already"):
        register.add("dsp-bus", "analyst")
    register.revoke("dsp-bus")
    assert register.authenticate(token) is None


def test_tokens_expire_rotate_and_the_register_never_follows_a_planted_link(tmp_path, reliability) -> None:
    """Issue #29: a token expires (a year unless --expires says otherwise); rotation replaces it;
    the register's temporary file is created exclusively, never through a planted link."""
    import datetime as dt
    import json as json_

    register = TokenRegister(tmp_path / "tokens.json")
    token = register.add("dsp-bus", "operator", "bus", expires_days=30)
    entry = register.entries()[0]
    assert dt.datetime.fromisoformat(entry["expires_at"]) - dt.datetime.fromisoformat(entry["created_at"]) == (
        dt.timedelta(days=30)
    )
    new = register.rotate("dsp-bus")
    assert register.authenticate(token) is None and register.authenticate(new).operator == "bus"
    # an entry past its expiry, and one written before tokens expired (created over a year ago)
    entries = register.entries()
    entries[0]["expires_at"] = "2020-01-01T00:00:00+00:00"
    (tmp_path / "tokens.json").write_text(json_.dumps({"tokens": entries}))
    assert register.authenticate(new) is None
    del entries[0]["expires_at"]
    entries[0]["created_at"] = "2024-01-01T00:00:00+00:00"
    (tmp_path / "tokens.json").write_text(json_.dumps({"tokens": entries}))
    assert register.authenticate(new) is None
    # a link planted where the old code wrote its temporary file is left alone
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / "tokens.tmp").symlink_to(victim)
    register.add("analyst-2", "analyst")
    assert victim.read_text() == "untouched"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    reliability(
        "api_tokens",
        3,
        3,
        0,
        "an expired token and one written before expiry existed (over a year old) refused; a rotated token's "
        "predecessor refused; a link planted at the old temporary name left untouched (O_EXCL and O_NOFOLLOW)",
    )


def test_every_answer_has_a_strict_policy_and_authorised_ones_are_not_stored(api: Api, reliability) -> None:
    """Issue #29: frame-ancestors 'none' everywhere, no-store on authorised answers, and Swagger UI
    and ReDoc served from the package's own files (no CDN)."""
    r = api.get("analyst", "/v1/marts")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    for page in ("/docs", "/redoc"):
        html = api.client.get(page)
        assert html.status_code == 200 and "frame-ancestors 'none'" in html.headers["content-security-policy"]
        assert "cdn." not in html.text and "googleapis" not in html.text
        for asset in __import__("re").findall(r'(?:src|href)="(/static-offline-docs/[^"]+)"', html.text):
            assert api.client.get(asset).status_code == 200, asset
    unauthorised = api.client.get("/v1/marts")
    assert unauthorised.status_code == 401
    assert "frame-ancestors 'none'" in unauthorised.headers["content-security-policy"]
    reliability(
        "api_headers",
        4,
        4,
        0,
        "JSON, Swagger UI, ReDoc and a 401: frame-ancestors 'none' and X-Frame-Options DENY on each; "
        "Cache-Control no-store on answers to a token; Swagger UI and ReDoc from the package's own files, no CDN",
    )


def test_od_cells_of_a_few_journeys_are_blanked_for_an_operator(api: Api, reliability) -> None:
    """Issue #29: the open-data small-count rule on mart_od_matrix for every principal but the
    city's analysts; a filter on a blanked count finds nothing."""
    full = api.get("analyst", "/v1/marts/mart_od_matrix/rows", limit=1000).json()["rows"]
    small = [r for r in full if r["journeys_inferred"] is not None and r["journeys_inferred"] < 10]
    assert small, "the sample lake has OD cells of a few journeys"
    seen = api.get("bus", "/v1/marts/mart_od_matrix/rows", limit=1000).json()["rows"]
    assert len(seen) == len(full)
    assert all(r["journeys_inferred"] is None or r["journeys_inferred"] >= 10 for r in seen)
    blanked = [r for r in seen if r["journeys_inferred"] is None]
    assert blanked and all(r["journeys_estimated"] is None and r["mean_stages"] is None for r in blanked)
    probe = api.get("bus", "/v1/marts/mart_od_matrix/rows", filter=["journeys_inferred:lt:10"]).json()
    assert probe["total"] == 0
    reliability(
        "small_counts",
        3,
        3,
        0,
        f"{len(blanked)} OD cells under 10 journeys blanked for an operator's token (a filter on them finds none); "
        "open data: a suppressed row blanks every count and the load factor; every text cell quoted against a "
        "';'-splitting spreadsheet (test_opendata.py)",
    )


def test_the_docs_of_the_marts_need_a_token_or_a_signed_link_and_read_two_records_at_most(
    api: Api, lake_after_nights, monkeypatch, reliability
) -> None:
    """Issue #29: /docs/marts answers a bearer token, or a link /v1/docs/link signed for 15 minutes
    (a browser sends no token); a tampered or expired link is refused; finding a publication by id
    or date reads one or two registry records, whatever the registry's size."""
    from urllib.parse import parse_qs, urlparse

    from citylake.core.storage import LocalStorage

    assert api.client.get("/docs/marts").status_code == 401
    page = api.get("analyst", "/docs/marts")
    assert page.status_code == 200 and "ng-csp" in page.text  # AngularJS without eval():
    policy = page.headers["content-security-policy"]
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    link = api.get("bus", "/v1/docs/link").json()["url"]
    assert api.client.get(link).status_code == 200
    query = parse_qs(urlparse(link).query)
    tampered = f"/docs/marts?expires={int(query['expires'][0]) + 3600}&signature={query['signature'][0]}"
    assert api.client.get(tampered).status_code == 401
    expired = f"/docs/marts?expires=1000&signature={query['signature'][0]}"
    assert api.client.get(expired).status_code == 401
    first = lake_after_nights.nights[0].gate.publication_id
    reads = []
    original = LocalStorage.get_json
    monkeypatch.setattr(LocalStorage, "get_json", lambda self, k: reads.append(k) or original(self, k))
    for as_of in (first, "2026-12-31"):
        reads.clear()
        assert api.get("analyst", "/docs/marts", as_of=as_of).status_code == 200
        assert len([k for k in reads if k.startswith("published/registry/")]) <= 2, reads
    reliability(
        "docs_page",
        3,
        3,
        0,
        "/docs/marts without a token, with a link whose expiry was moved, with an expired link: 401; a bearer "
        "token or a 15-minute signed link (/v1/docs/link) opens it; as of an id or a date it reads ≤ 2 "
        "registry records",
    )


def test_openapi_is_get_only_and_the_committed_spec_is_current(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    methods = {m for ops in spec["paths"].values() for m in ops}
    assert methods == {"get"}, "the API is read-only"
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == spec, "docs/openapi.json is stale: run `citylake api-spec docs/openapi.json`"
    for verb in ("post", "put", "patch", "delete"):
        r = getattr(api.client, verb)(
            "/v1/marts/mart_contract_kpis/rows", headers={"Authorization": f"Bearer {api.tokens['analyst']}"}
        )
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_tokens_are_required(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}):
        r = api.client.get("/v1/marts", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"


def test_an_operator_reads_only_its_own_rows(api: Api) -> None:
    every = api.get("analyst", "/v1/marts/mart_contract_kpis/rows", limit=1000).json()
    assert {r["operator"] for r in every["rows"]} == {"bus", "parking"}
    for op in ("bus", "parking"):
        own = api.get(op, "/v1/marts/mart_contract_kpis/rows", limit=1000).json()
        assert own["total"] == sum(r["operator"] == op for r in every["rows"]) > 0
        assert {r["operator"] for r in own["rows"]} == {op}
        other = "parking" if op == "bus" else "bus"
        # asking for the other operator's rows, however phrased, returns none of them
        for f in (
            f"operator:eq:{other}",
            f"operator:ne:{op}",
            f"operator:in:{other}|{op}",
            "operator:like:%",
            f"operator:eq:{other}' or '1'='1",
        ):
            rows = api.get(op, "/v1/marts/mart_contract_kpis/rows", filter=f, limit=1000).json()["rows"]
            assert all(r["operator"] == op for r in rows), f
        # as of an older publication too
        pub = own["publication_id"]
        assert {r["operator"] for r in api.get(op, "/v1/marts/mart_contract_kpis/rows", as_of=pub).json()["rows"]} == {
            op
        }


def test_an_operator_cannot_read_marts_built_from_another_operators_data(api: Api) -> None:
    listed = {m["name"] for m in api.get("parking", "/v1/marts").json()["marts"]}
    assert "mart_bus_load_profile" not in listed and "mart_parking_occupancy_hourly" in listed
    assert "dim_calendar" in listed  # reference data, nobody's
    for url in ("/v1/marts/mart_bus_load_profile", "/v1/marts/fct_stop_visit_loads/rows", "/v1/lines/111/load-profile"):
        r = api.get("parking", url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", url
    bus_listed = {m["name"]: m["row_scope"] for m in api.get("bus", "/v1/marts").json()["marts"]}
    assert bus_listed["mart_bus_load_profile"] == "all rows"
    assert bus_listed["mart_contract_kpis"] == "own operator's rows"
    assert api.get("bus", "/v1/marts/mart_parking_occupancy_hourly/rows").json()["total"] == 0


def test_rows_are_filtered_and_paged_without_overlap(api: Api) -> None:
    url = "/v1/marts/mart_line_ridership_daily/rows"
    everything = api.get("analyst", url, limit=5000).json()
    assert everything["total"] == len(everything["rows"]) > 100
    pages, offset = [], 0
    while offset is not None:
        page = api.get("analyst", url, limit=37, offset=offset).json()
        pages += page["rows"]
        offset = page["next_offset"]
    assert pages == everything["rows"]
    line = everything["rows"][0]["route_short_name"]
    mine = api.get(
        "analyst", url, filter=[f"route_short_name:eq:{line}", "validations:ge:1"], order_by="-validations"
    ).json()
    assert mine["rows"] and all(r["route_short_name"] == line and r["validations"] >= 1 for r in mine["rows"])
    assert [r["validations"] for r in mine["rows"]] == sorted((r["validations"] for r in mine["rows"]), reverse=True)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filter": "nope:eq:1"}, "bad_filter"),
        ({"filter": "validations:eq:many"}, "bad_filter"),
        ({"filter": "validations"}, "invalid_parameters"),
        ({"filter": "validations:between:1"}, "invalid_parameters"),
        ({"order_by": "-nope"}, "bad_order"),
        ({"order_by": "validations desc; drop table x"}, "invalid_parameters"),
        ({"limit": 0}, "invalid_parameters"),
        ({"limit": 10**6}, "invalid_parameters"),
        ({"as_of": "not-a-publication"}, "publication_not_found"),
    ],
)
def test_errors_are_clean_json(api: Api, params: dict, code: str) -> None:
    r = api.get("analyst", "/v1/marts/mart_line_ridership_daily/rows", **params)
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body["error"]["code"] == code and "Traceback" not in r.text
    unknown = api.get("analyst", "/v1/marts/no_such_mart").json()["error"]
    assert unknown["code"] == "invalid_parameters" and "mart_bus_load_profile" in unknown["message"]


def test_load_profile_of_a_line_follows_the_mart(api: Api) -> None:
    row = api.get("analyst", "/v1/marts/mart_bus_load_profile/rows", limit=1).json()["rows"][0]
    line = row["route_short_name"]
    r = api.get(
        "bus",
        f"/v1/lines/{line}/load-profile",
        month=row["month"],
        direction_id=row["direction_id"],
        day_type=row["day_type"],
        time_band=row["time_band"],
    )
    assert r.status_code == 200
    (profile,) = r.json()["profiles"]
    assert (profile["month"], profile["feed_version"]) == (row["month"], row["feed_version"])
    seqs = [s["stop_sequence"] for s in profile["stops"]]
    assert seqs == sorted(seqs) and len(seqs) > 2
    mart = api.get(
        "analyst",
        "/v1/marts/mart_bus_load_profile/rows",
        limit=5000,
        order_by="stop_sequence",
        filter=[
            f"route_short_name:eq:{line}",
            f"month:eq:{row['month']}",
            f"feed_version:eq:{row['feed_version']}",
            f"direction_id:eq:{row['direction_id']}",
            f"day_type:eq:{row['day_type']}",
            f"time_band:eq:{row['time_band']}",
        ],
    ).json()["rows"]
    assert [s["mean_load"] for s in profile["stops"]] == [m["mean_load"] for m in mart]
    assert api.get("bus", "/v1/lines/no-such-line/load-profile").json()["error"]["code"] == "line_not_found"


def test_parking_availability_is_scoped_per_operator(tmp_path) -> None:
    """Two parking operators in one publication: each sees its own car parks, the analyst both."""
    from citylake.publish.reader import CURRENT

    s = Settings.model_construct(
        lake_uri=(tmp_path / "lake").as_uri(),
        timezone="Europe/Paris",
        duckdb_threads=1,
        duckdb_memory_limit="1GB",
        api_tokens_file=str(tmp_path / "t.json"),
    )
    storage = open_storage(s)
    hourly = pl.DataFrame(
        {
            "operator": ["parking", "parking", "montpellier"],
            "facility_id": ["P1", "P1", "M1"],
            "facility_name": ["Gare", "Gare", "Comédie"],
            "service_date": [date(2026, 3, 30)] * 3,
            "local_hour": [17, 18, 18],
            "capacity": [400, 400, 1000],
            "readings_usable": [12, 12, 0],
            "mean_occupancy_rate": [0.5, 0.75, 0.1],
        }
    )
    path = tmp_path / "h.parquet"
    hourly.write_parquet(path)
    k = "published/versions/p1/parking/mart_parking_occupancy_hourly.parquet"
    storage.put_file(k, path)
    storage.put_json(
        CURRENT,
        {
            "groups": {
                "parking": {"publication_id": "p1", "published_at": None, "marts": {"mart_parking_occupancy_hourly": k}}
            }
        },
        overwrite=True,
    )
    register = TokenRegister(s.api_tokens_file)
    tokens = {
        "parking": register.add("p", "operator", "parking"),
        "montpellier": register.add("m", "operator", "montpellier"),
        "analyst": register.add("a", "analyst"),
    }
    client = TestClient(create_app(s, storage, register), raise_server_exceptions=False)

    def parks(who):
        r = client.get("/v1/parking/availability", headers={"Authorization": f"Bearer {tokens[who]}"})
        assert r.status_code == 200, r.text
        return {(p["operator"], p["facility_id"]): p for p in r.json()["car_parks"]}

    own = parks("parking")
    assert list(own) == [("parking", "P1")]
    assert own[("parking", "P1")]["observed_hour"] == 18 and own[("parking", "P1")]["places_available"] == 100
    assert parks("montpellier") == {}  # its only hour had no usable reading
    assert list(parks("analyst")) == [("parking", "P1")]


# --- fuzzing: every operation of the OpenAPI spec, as an analyst and as an operator ----------


def fuzz(api: Api, role: str, examples: int = 40) -> int:
    """Every operation of the spec, ``examples`` generated cases each (schemathesis' strategies
    driven by hypothesis: its pytest plugin's lazy fixtures do not run on pytest 9).

    Every schemathesis check runs (no 5xx, status codes, content type and response bodies as
    documented, auth enforced, negative data rejected) except ``positive_data_acceptance``: a
    request can be well-formed yet name a column the mart lacks, a value that is not a date,
    or an as-of date before the first publication, and the right answer is then a 400/404
    saying so, not a 2xx."""
    from hypothesis import given
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        run()
    return len(operations)


def test_fuzzed_as_an_analyst_never_fails_on_the_server(api: Api) -> None:
    fuzz(api, "analyst")


def test_fuzzed_as_an_operator_never_fails_on_the_server(api: Api) -> None:
    fuzz(api, "parking")


def test_pages_are_pinned_to_the_publication_they_started_on(api: Api) -> None:
    """Each page names its publication; the next-page link reads that same publication (as_of)."""
    whole = api.get("analyst", "/v1/marts/mart_stop_usage/rows", order_by="stop_id", limit=1000).json()
    first = api.get("analyst", "/v1/marts/mart_stop_usage/rows", order_by="stop_id", limit=100).json()
    assert first["next_page"] and f"as_of={first['publication_id']}" in first["next_page"]
    pages, page = [first], first
    while page["next_page"]:
        page = api.client.get(page["next_page"], headers={"Authorization": f"Bearer {api.tokens['analyst']}"}).json()
        assert page["publication_id"] == first["publication_id"]
        pages.append(page)
    assert [r for p in pages for r in p["rows"]] == whole["rows"] and pages[-1]["next_page"] is None
