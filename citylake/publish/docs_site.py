"""The documentation of the marts for analysts: dbt's docs site, written by each publication.

One self-contained HTML page per publication, ``reports/docs/<publication_id>/index.html``:
dbt's docs application with the build's manifest (every model, its description and grain, its
columns, its SQL, its tests) and the warehouse's catalog (column types) inlined, so it opens from a
file or from ``citylake serve`` (``/docs/marts``) with nothing fetched from outside. Its overview
says what the publication holds: each group, the publication in force for it, and its marts. The
lineage graph runs from each mart back to the operators' staged feeds (dbt sources).

Two slips of dbt's page are mended (a favicon and tree icons that point to URLs which are not
ones). What is dropped from dbt's manifest: the macros of dbt itself and of its DuckDB adapter (about
500 of them, 40 % of the manifest, none of them the city's). Usage tracking stays off (the
project sets ``send_anonymous_usage_stats: false``, and the page's manifest says so).
"""

from __future__ import annotations

import json
from pathlib import Path

from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage

OVERVIEW_ID = "doc.citylake.__overview__"
TITLE = "citylake — documentation des marts publiés"


DOCS_PREFIX = key(Zone.REPORTS, "docs")


def docs_key(publication_id: str) -> str:
    return key(Zone.REPORTS, f"docs/{publication_id}", filename="index.html")  # under DOCS_PREFIX


def _inline(data: dict) -> str:
    # JSON inside a <script>: "</" would close it early
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def overview(record: dict, group_marts: dict[str, list[str]]) -> str:
    """The overview page (markdown): what this publication holds and how to read it."""
    groups = record["current_after"].get("groups", {})
    lines = [
        "## Les marts publiés par citylake",
        "",
        f"Publication **{record['publication_id']}**, du {record['created_at'][:16].replace('T', ' ')} UTC ; "
        f"dates de service : {', '.join(record['service_dates']) or 'toutes'} ; code {record['code_version']}.",
        "",
        "| groupe | état cette nuit | publication en vigueur | marts |",
        "|---|---|---|---|",
    ]
    for group in sorted(set(groups) | set(group_marts)):
        entry = groups.get(group, {})
        if group in record["groups_published"]:
            state = "publié"
        elif group in record["groups_refused"]:
            state = "refusé : la publication précédente reste en vigueur"
        else:
            state = "—"
        marts = ", ".join(f"`{m}`" for m in sorted(entry.get("marts") or group_marts.get(group, [])))
        lines.append(f"| {group} | {state} | {entry.get('publication_id', 'aucune')} | {marts} |")
    lines += [
        "",
        "Les pages des modèles décrivent la version construite cette nuit. Pour un groupe refusé, les "
        "consommateurs lisent encore la publication précédente : sa documentation est celle de cette "
        "publication-là (`citylake serve`, `/docs/marts?as_of=…`).",
        "",
        "### Lire un mart",
        "",
        "- **Grain et colonnes** : dans l'arbre du projet à gauche, `models/marts/…` ; chaque mart dit "
        "son grain dans sa description, chaque colonne son sens et son unité.",
        "- **Lignage** : le bouton en bas à droite de chaque page de modèle ouvre le graphe, du mart "
        "jusqu'aux fichiers des exploitants mis en zone *staged* (sources, en vert).",
        "- **Données** : `citylake catalog` (un fichier DuckDB de vues pour SQL, Python ou un outil de "
        "BI), `citylake query`, ou l'API (`citylake serve`, `/v1/marts`). Les données ouvertes (ODbL) "
        "sont dans `opendata/` du lac.",
        "- **Contrôles** : les tests de chaque modèle sont ceux que la porte de publication exige ; le "
        f"rapport qualité de cette nuit est `{record['report']}`.",
    ]
    return "\n".join(lines) + "\n"


def render(target: Path, record: dict, group_marts: dict[str, list[str]]) -> str:
    """dbt's docs page with this publication's manifest (trimmed, with its overview) and catalog inlined."""
    page = (target / "index.html").read_text(encoding="utf-8")
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    catalog = json.loads((target / "catalog.json").read_text(encoding="utf-8"))
    project = manifest["metadata"].get("project_name") or "citylake"
    manifest["metadata"]["send_anonymous_usage_stats"] = False
    manifest["macros"] = {k: m for k, m in manifest["macros"].items() if m.get("package_name") == project}
    manifest["docs"][OVERVIEW_ID] = {
        "name": "__overview__",
        "resource_type": "doc",
        "package_name": "citylake",
        "path": "overview.md",
        "original_file_path": "overview.md",
        "unique_id": OVERVIEW_ID,
        # this publication first, then the project's own overview (dbt_project/models/overview.md)
        "block_contents": overview(record, group_marts)
        + "\n---\n\n"
        + manifest["docs"].get(OVERVIEW_ID, {}).get("block_contents", ""),
    }
    for placeholder in ('"MANIFEST.JSON INLINE DATA"', '"CATALOG.JSON INLINE DATA"'):
        if placeholder not in page:
            raise ValueError(f"dbt's docs page has no {placeholder} placeholder (dbt version changed?)")
    page = page.replace('"MANIFEST.JSON INLINE DATA"', _inline(manifest), 1)
    page = page.replace('"CATALOG.JSON INLINE DATA"', _inline(catalog), 1)
    page = page.replace("<title>dbt Docs</title>", f"<title>{TITLE}</title>", 1)
    # two slips of dbt's page make the browser fetch a URL that is not one: a favicon left as a
    # build-time template, and tree icons bound before Angular compiles them (xlink:href="{{ }}")
    page = page.replace("href=\"${require('./assets/favicons/favicon.ico')}\"", 'href="data:,"')
    page = page.replace('xlink:href="{{ getIcon(', 'ng-attr-href="{{ getIcon(')
    # AngularJS in CSP mode evaluates its expressions without eval(): the page is served without
    # 'unsafe-eval' (citylake.consumers.api.DOCS_HEADERS)
    return page.replace('ng-app="dbt"', 'ng-app="dbt" ng-csp', 1)


def write_docs_site(storage: LakeStorage, target: Path, record: dict, group_marts: dict[str, list[str]]) -> str:
    """Write the publication's docs page; return its key."""
    page_key = docs_key(record["publication_id"])
    storage.put_bytes(
        page_key,
        render(target, record, group_marts).encode("utf-8"),
        metadata={"content-type": "text/html"},
        overwrite=True,
    )
    return page_key


def site_for(storage: LakeStorage, pointer: dict) -> str | None:
    """Return the key of the docs page of a pointer: the newest publication it names that has one."""
    for publication_id in sorted({g["publication_id"] for g in pointer.get("groups", {}).values()}, reverse=True):
        if storage.exists(docs_key(publication_id)):
            return docs_key(publication_id)
    return None
