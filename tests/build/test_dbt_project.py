"""The dbt project by the book: layers, grain, documentation, keys, freshness tied to the contracts."""

from __future__ import annotations

import re

import duckdb
import pytest

from citylake.build.groups import group_marts, load_manifest
from ingestion import registry


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest()


def _models(manifest: dict, folder: str) -> dict[str, dict]:
    return {
        n["name"]: n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["original_file_path"].startswith(f"models/{folder}/")
    }


def test_layers_point_one_way(manifest) -> None:
    """staging reads sources only; intermediate never reads marts; source() only in staging."""
    marts = {f"model.citylake.{name}" for name in _models(manifest, "marts")}
    for layer in ("staging", "intermediate"):
        for name, node in _models(manifest, layer).items():
            assert not set(node["depends_on"]["nodes"]) & marts, f"{layer} model {name} reads a mart"
    for name, node in {**_models(manifest, "intermediate"), **_models(manifest, "marts")}.items():
        assert not [d for d in node["depends_on"]["nodes"] if d.startswith("source.")], f"{name} reads a source"


def test_every_model_and_seed_states_its_grain(manifest) -> None:
    grain = re.compile(r"\bgrain\b|one row per", re.IGNORECASE)
    missing = [
        n["name"]
        for n in manifest["nodes"].values()
        if n["resource_type"] in ("model", "seed") and not grain.search(n["description"] or "")
    ]
    assert not missing, f"no grain stated in the YAML description of {missing}"


def test_every_published_mart_has_a_tested_key(manifest) -> None:
    """A unique test (column or combination) and not_null on each key column."""
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test" and "test_metadata" in n]
    for group, marts in group_marts(manifest).items():
        for mart in marts:
            mine = [t for t in tests if t.get("attached_node") == f"model.citylake.{mart}"]
            unique = [t for t in mine if t["test_metadata"]["name"] in ("unique", "unique_combination")]
            assert unique, f"{group} mart {mart} has no uniqueness test"
            for t in unique:
                kwargs = t["test_metadata"]["kwargs"]
                keys = kwargs.get("columns") or [kwargs.get("column_name")]
                not_null = {
                    u["test_metadata"]["kwargs"].get("column_name")
                    for u in mine
                    if u["test_metadata"]["name"] == "not_null"
                }
                assert set(keys) <= not_null, f"{mart}: key columns {set(keys) - not_null} have no not_null test"


def test_foreign_keys_are_tested(manifest) -> None:
    relationships = {
        (t["attached_node"].split(".")[-1], t["test_metadata"]["kwargs"]["column_name"])
        for t in manifest["nodes"].values()
        if t["resource_type"] == "test" and t.get("test_metadata", {}).get("name") == "relationships"
    }
    for fk in [
        ("fct_stop_visit_loads", "service_date"),
        ("fct_stop_visit_loads", "stop_id"),
        ("mart_od_matrix", "origin_stop_id"),
        ("mart_parking_occupancy_daily", "facility_id"),
        ("mart_maintenance_monthly", "vehicle_id"),
        ("mart_contract_kpis", "kpi_code"),
    ]:
        assert fk in relationships, fk


def test_source_freshness_follows_the_contracts_deadlines(manifest) -> None:
    """A dated feed due 'D+N HH:MM' is at most 24 N + HH + 24 hours old between two deadlines:
    one missed delivery warns, two error. The thresholds dbt holds are the ones the contracts
    give (passed as a var), measured from midnight on the city's clock; a dataset no dated feed
    stages has none."""
    sources = {n["name"]: n for n in manifest["sources"].values() if n["source_name"] == "staged"}
    checked = 0
    for c in registry.feeds():
        m = re.match(r"D\+(\d+) (\d\d):(\d\d)", str(c.file.get("deadline", "")))
        if not m:
            continue
        due_h = 24 * int(m.group(1)) + int(m.group(2)) + (1 if int(m.group(3)) else 0)
        source = sources[c.staged["dataset"]]
        assert source["freshness"]["warn_after"] == {"count": due_h + 24, "period": "hour"}, c.key
        assert source["freshness"]["error_after"] == {"count": due_h + 48, "period": "hour"}, c.key
        assert source["loaded_at_field"] == "timezone('Europe/Paris', cast(service_date as timestamp))"
        checked += 1
    assert checked >= 6
    assert sources["vehicles"]["freshness"]["warn_after"]["count"] is None


def test_every_published_column_is_described(manifest, lake_after_nights) -> None:
    """What `dbt docs generate` shows an analyst: every column of every published mart, described."""
    con = duckdb.connect(str(lake_after_nights.warehouse), read_only=True)
    try:
        undescribed = []
        for marts in group_marts(manifest).values():
            for mart in marts:
                node = manifest["nodes"][f"model.citylake.{mart}"]
                columns = [
                    r[0]
                    for r in con.execute(
                        "select column_name from information_schema.columns where table_name = ?", [mart]
                    ).fetchall()
                ]
                assert columns, mart
                described = {c for c, v in node["columns"].items() if (v.get("description") or "").strip()}
                undescribed += [f"{mart}.{c}" for c in columns if c not in described]
    finally:
        con.close()
    assert not undescribed, undescribed


def test_a_dbt_run_hit_by_cpythons_ast_race_runs_once_more(monkeypatch) -> None:
    """Python < 3.11.8 can fail a thread's compile() at random (python/cpython gh-106905): the
    command runs once more, and only for that error."""
    from pathlib import Path

    from citylake.build import dbt

    race = {"node": "unit_test.x", "status": "error", "message": "AST constructor recursion depth mismatch (1, 2)"}
    other = {"node": "model.y", "status": "error", "message": "Binder Error: column z not found"}
    for first, runs_expected, success in (([race], 2, True), ([other], 1, False)):
        calls = []

        def fake(args, settings, storage=None, warehouse=None, first=first, calls=calls):
            calls.append(args)
            return dbt.BuildResult(len(calls) > 1, Path("w.duckdb"), first if len(calls) == 1 else [])

        monkeypatch.setattr(dbt, "_run_dbt", fake)
        monkeypatch.setattr(dbt, "_AST_RACE_POSSIBLE", True)
        assert dbt.run_dbt(["build"], settings=None).success is success
        assert len(calls) == runs_expected


def test_the_nights_leave_dbt_unit_tests_to_make_test(file_settings, monkeypatch) -> None:
    """A night's build skips dbt's unit tests (static inputs: they test the code, and make test runs
    them); ``citylake build --unit-tests`` and make test's builds run them."""
    from pathlib import Path

    from citylake.build import dbt
    from citylake.night import steps

    calls = []

    def fake(args, settings, storage=None, warehouse=None):
        calls.append(list(args))
        return dbt.BuildResult(True, Path("w.duckdb"), [])

    monkeypatch.setattr(dbt, "run_dbt", fake)
    plan = {"first_build": False, "dates": ["2026-03-30"], "selections": {"transit": ["fct_stop_visit_loads"]}}
    steps.build_marts(file_settings, plan)
    steps.build_marts(file_settings, plan, group="transit")
    dbt.build(file_settings, unit_tests=True)
    skip = ["--exclude-resource-type", "unit_test"]
    assert [any(args[i : i + 2] == skip for i in range(len(args))) for args in calls] == [True, True, False]


def test_a_build_may_spill_a_quarter_of_the_free_disk_and_no_more(tmp_path, monkeypatch) -> None:
    """Issue #32: three metro days once spilled 60 GB and filled the disk. Every dbt call gets a
    temp budget (a quarter of the free disk under the warehouse, or CITYLAKE_DUCKDB_MAX_TEMP), the
    profile has no fallback to DuckDB's 90 %, and DuckDB stops a query at it with an error."""
    import shutil

    import yaml

    from citylake.build.dbt import DBT_PROJECT, dbt_env
    from citylake.core.settings import Settings
    from citylake.core.storage import open_storage

    monkeypatch.setenv("CITYLAKE_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.delenv("CITYLAKE_DUCKDB_MAX_TEMP", raising=False)
    settings = Settings()
    env = dbt_env(settings, open_storage(settings), tmp_path / "warehouse.duckdb")
    budget = int(env["CITYLAKE_DUCKDB_MAX_TEMP"].removesuffix("MB")) * 10**6
    assert budget == pytest.approx(shutil.disk_usage(tmp_path).free / 4, rel=0.01)
    monkeypatch.setenv("CITYLAKE_DUCKDB_MAX_TEMP", "3GB")
    settings = Settings()
    assert dbt_env(settings, open_storage(settings), tmp_path / "w.duckdb")["CITYLAKE_DUCKDB_MAX_TEMP"] == "3GB"
    profile = yaml.safe_load((DBT_PROJECT / "profiles.yml").read_text(encoding="utf-8"))
    assert profile["citylake"]["outputs"]["local"]["settings"]["max_temp_directory_size"] == (
        "{{ env_var('CITYLAKE_DUCKDB_MAX_TEMP') }}"
    )
    # dbt-duckdb applies the profile's settings as SET on the live connection, which is what
    # reaches DuckDB's buffer manager (given at open, DuckDB 1.5 echoes the value but enforces its
    # 90 % default): a query that would spill past the budget fails, naming the setting
    con = duckdb.connect(config={"memory_limit": "64MB", "threads": 1})
    con.sql(f"set temp_directory = '{tmp_path / 'spill'}'")
    con.sql("set max_temp_directory_size = '1MB'")
    sort = (
        "copy (select i, hash(i) as h, md5(i::varchar) || md5((i + 1)::varchar) as s from range(5000000) as t (i)"
        f" order by h) to '{tmp_path / 'sorted.parquet'}'"
    )
    with pytest.raises(duckdb.OutOfMemoryException, match="max_temp_directory_size"):
        con.sql(sort)
    con.close()
