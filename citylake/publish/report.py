"""The quality report of a run: a page a person can read, and the same as JSON for machines."""

from __future__ import annotations

import html
import json
from dataclasses import asdict

from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage
from ingestion import registry
from quality.suites import SuiteRun

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1c2733;max-width:1100px}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #dde3ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f5f8} .ok{color:#1d7a3a;font-weight:600} .ko{color:#b3261e;font-weight:600}
.warn{color:#9a6700;font-weight:600}
.muted{color:#5b6673} code{font-size:.85rem}
"""


def _status(ok: bool, severity: str) -> str:
    if ok:
        return '<span class="ok">réussi</span>'
    return '<span class="ko">bloquant</span>' if severity == "error" else '<span class="warn">avertissement</span>'


def _dates(dates: list[str]) -> str:
    """The service dates of a publication: each one, or the range of a long load."""
    if not dates:
        return "toutes"
    if len(dates) <= 10:
        return ", ".join(dates)
    return f"{len(dates)} dates, du {dates[0]} au {dates[-1]}"


def render(record: dict, checks: SuiteRun) -> str:
    e = html.escape
    groups = []
    through = record.get("published_through") or {}
    for g in registry.groups():
        refused = record["groups_refused"].get(g)
        if g in record["groups_published"] and refused:  # a run of batches stopped by a refusal
            groups.append(
                f"<tr><td>{g}</td><td class='warn'>publié jusqu'au {e(through.get(g, '?'))}, refusé "
                f"ensuite — le chargement s'est arrêté là</td><td>{'<br>'.join(e(r) for r in refused)}</td></tr>"
            )
        elif g in record["groups_published"]:
            groups.append(f"<tr><td>{g}</td><td class='ok'>publié</td><td>—</td></tr>")
        else:
            reasons = "<br>".join(e(r) for r in record["groups_refused"].get(g, []))
            groups.append(
                f"<tr><td>{g}</td><td class='ko'>refusé — la publication précédente reste en "
                f"vigueur</td><td>{reasons}</td></tr>"
            )
    rows = []
    for r in checks.results:
        detail = []
        if r.unexpected_count:
            detail.append(f"{r.unexpected_count} valeur(s) hors règle ({(r.unexpected_percent or 0):.2f} %)")
        if r.examples:
            detail.append("par ex. " + ", ".join(e(str(x)) for x in r.examples))
        if r.observed is not None and not isinstance(r.observed, list | dict):
            detail.append(f"observé : {e(str(r.observed))}")
        if r.error:
            detail.append(e(r.error))
        batch = f"<br><span class='muted'>{e(r.dates)}</span>" if r.dates else ""
        rows.append(
            f"<tr><td>{e(r.group)}</td><td>{e(r.suite)}{batch}</td>"
            f"<td>{e(r.why)}<br><code class='muted'>{e(r.expectation)}"
            f"{' · ' + e(r.column) if r.column else ''}</code></td>"
            f"<td>{'erreur' if r.severity == 'error' else 'avertissement'}</td>"
            f"<td>{_status(r.success, r.severity)}</td><td>{'; '.join(detail)}</td></tr>"
        )
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Contrôle qualité —
{e(record["run_id"])}</title><style>{CSS}</style></head>
<body>
<h1>Contrôle qualité de la publication {e(record["publication_id"])}</h1>
<p class="muted">Exécution {e(record["run_id"])} · {e(record["created_at"])} · code {e(record["code_version"])} ·
dates de service : {e(_dates(record["service_dates"]))}</p>
<h2>Groupes</h2>
<table><tr><th>groupe</th><th>décision</th><th>motifs</th></tr>{"".join(groups)}</table>
<h2>Contrôles ({record["checks"]["total"]} ; {record["checks"]["failed_blocking"]} bloquant(s),
{record["checks"]["failed_warning"]} avertissement(s))</h2>
<table><tr><th>groupe</th><th>suite</th><th>règle</th><th>sévérité</th><th>résultat</th><th>détail</th></tr>{"".join(rows)}</table>
<h2>Entrées</h2>
<p class="muted">{len(record["inputs"])} livraison(s) (sha256) :
{e(", ".join(x[:12] for x in record["inputs"][:60]))}{" …" if len(record["inputs"]) > 60 else ""}</p>
</body></html>
"""


def write_report(storage: LakeStorage, record: dict, checks: SuiteRun) -> str:
    """Write reports/quality/<run_id>/index.html and result.json; return the page's key."""
    page = key(Zone.REPORTS, f"quality/{record['run_id']}", filename="index.html")
    storage.put_bytes(
        page, render(record, checks).encode("utf-8"), metadata={"content-type": "text/html"}, overwrite=True
    )
    data = {**record, "results": [asdict(r) for r in checks.results]}
    storage.put_bytes(
        key(Zone.REPORTS, f"quality/{record['run_id']}", filename="result.json"),
        json.dumps(data, indent=2, default=str).encode(),
        overwrite=True,
    )
    return page
