"""Which publication group each dbt node belongs to, read from dbt's manifest — never guessed.

A published mart is a dbt model that declares its group (``config: meta: group:``, set per
folder in ``dbt_project.yml`` or per model in its YAML); a marts-layer building block that only
feeds other marts says ``meta: published: false`` (the contract's KPI values). The groups themselves, and what each
depends on, are declared in the registry (``ingestion/operators.yaml``). From the manifest:

* :func:`group_marts`: the marts each group publishes;
* :func:`mart_periods`: the period each mart is rebuilt and published by (its incremental key);
* :func:`node_groups`: the groups a node's failure refuses (a mart: its own group; an upstream
  model or seed: every group with a mart downstream of it; a test: the groups of what it tests);
* :func:`build_selections`: per group, the nodes to ``--select`` so that the group builds run
  every node exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

from citylake.build.dbt import DBT_PROJECT, VARS_STAMP, city_vars, run_dbt, target_dir
from citylake.core.errors import ConfigError
from citylake.core.settings import Settings
from ingestion import registry

_SOURCES = ("models", "macros", "seeds", "tests", "dbt_project.yml")


def _newest_source() -> float:
    newest = 0.0
    for name in _SOURCES:
        p = DBT_PROJECT / name
        paths = [p] if p.is_file() else (q for q in p.rglob("*") if q.is_file())
        newest = max([newest, *(q.stat().st_mtime for q in paths)])
    return newest


def load_manifest(settings: Settings | None = None, path: Path | None = None) -> dict:
    """Return dbt's manifest, parsing the project first when the one on disk is older than it or
    was made with other city vars (another time zone, zone or deadline: :func:`city_vars`)."""
    settings = settings or Settings()
    path = path or target_dir() / "manifest.json"
    stamp = path.with_name(VARS_STAMP)
    wanted = json.dumps(city_vars(settings.city), sort_keys=True)
    if (
        not path.exists()
        or path.stat().st_mtime < _newest_source()
        or not stamp.exists()
        or stamp.read_text(encoding="utf-8") != wanted
    ):
        run_dbt(["parse"], settings)
    return json.loads(path.read_text(encoding="utf-8"))


def _meta(node: dict) -> dict:
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def mart_groups(manifest: dict) -> dict[str, str]:
    """Return mart name -> publication group, for every model that declares one."""
    known = set(registry.groups())
    out: dict[str, str] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        meta = _meta(node)
        if meta.get("published") is False:
            continue
        group = meta.get("group")
        if group is None:
            if node.get("original_file_path", "").startswith("models/marts/"):
                raise ConfigError(
                    f"dbt model {node['name']} is under models/marts/ but declares no "
                    "publication group (config: meta: group:)"
                )
            continue
        if group not in known:
            raise ConfigError(
                f"dbt model {node['name']}: meta group {group!r} is not one of {sorted(known)} "
                "(ingestion/operators.yaml groups)"
            )
        out[node["name"]] = group
    return out


PERIODS = ("service_date", "month")


def mart_periods(manifest: dict) -> dict[str, str | None]:
    """Return mart name -> its period column (None for a dimension, rewritten whole).

    A mart's period is the ``unique_key`` of its incremental model (``service_date`` or
    ``month``): the unit dbt rebuilds and the publication rewrites. A table-materialised mart has none."""
    published = mart_groups(manifest)
    out: dict[str, str | None] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["name"] not in published:
            continue
        config = node.get("config") or {}
        key = config.get("unique_key") if config.get("materialized") == "incremental" else None
        if key is not None and key not in PERIODS:
            raise ConfigError(
                f"dbt model {node['name']}: a published incremental mart's unique_key must be a period, "
                f"one of {PERIODS}, not {key!r}"
            )
        out[node["name"]] = key
    return out


def group_marts(manifest: dict) -> dict[str, tuple[str, ...]]:
    """Return group -> its marts (sorted), for every group of the registry (in its order)."""
    by_group: dict[str, list[str]] = {g: [] for g in registry.groups()}
    for mart, group in mart_groups(manifest).items():
        by_group[group].append(mart)
    return {g: tuple(sorted(m)) for g, m in by_group.items()}


def _graph(manifest: dict) -> tuple[dict[str, dict], dict[str, list[str]]]:
    nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}
    parents = {uid: [p for p in (n.get("depends_on") or {}).get("nodes", []) if p in nodes] for uid, n in nodes.items()}
    return nodes, parents


def node_groups(manifest: dict) -> dict[str, set[str]]:
    """Return node unique id -> the publication groups its failure refuses."""
    nodes, parents = _graph(manifest)
    groups = mart_groups(manifest)
    children: dict[str, list[str]] = {uid: [] for uid in nodes}
    for uid, ps in parents.items():
        for p in ps:
            children[p].append(uid)
    downstream: dict[str, set[str]] = {}

    def marts_below(uid: str) -> set[str]:
        if uid in downstream:
            return downstream[uid]
        downstream[uid] = set()  # cycles are impossible in dbt; this guards the recursion anyway
        n = nodes[uid]
        found = {groups[n["name"]]} if n["resource_type"] == "model" and n["name"] in groups else set()
        for c in children[uid]:
            if nodes[c]["resource_type"] not in ("test", "unit_test"):
                found |= marts_below(c)
        downstream[uid] = found
        return found

    out: dict[str, set[str]] = {}
    for uid, n in nodes.items():
        if n["resource_type"] in ("test", "unit_test"):
            out[uid] = set().union(*(marts_below(p) for p in parents[uid])) if parents[uid] else set()
        else:
            out[uid] = marts_below(uid)
    return out


def build_selections(manifest: dict) -> dict[str, list[str]]:
    """Return, per group, the names to ``--select`` so that the groups together build every node once.

    A group owns its marts and every upstream node no earlier group owns; a test or unit test
    belongs to the latest group among its parents; what no mart needs goes to the last group."""
    order = registry.groups()
    nodes, parents = _graph(manifest)
    by_name = {n["name"]: uid for uid, n in nodes.items() if n["resource_type"] in ("model", "seed", "snapshot")}
    owner: dict[str, str] = {}

    def claim(uid: str, group: str) -> None:
        stack = [uid]
        while stack:
            u = stack.pop()
            if u in owner:
                continue
            owner[u] = group
            stack += parents[u]

    marts = group_marts(manifest)
    for group in order:
        for mart in marts[group]:
            claim(by_name[mart], group)
    rank = {g: i for i, g in enumerate(order)}
    for uid, n in nodes.items():
        if n["resource_type"] in ("test", "unit_test"):
            groups = [owner.get(p, order[-1]) for p in parents[uid]] or [order[-1]]
            owner[uid] = max(groups, key=rank.__getitem__)
        elif uid not in owner:
            owner[uid] = order[-1]
    out: dict[str, list[str]] = {g: [] for g in order}
    for uid in sorted(owner):
        n = nodes[uid]
        out[owner[uid]].append(f"unit_test:{n['name']}" if n["resource_type"] == "unit_test" else n["name"])
    return out
