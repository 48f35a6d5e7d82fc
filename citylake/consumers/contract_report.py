"""The monthly operator report a contract manager can defend: one self-contained HTML page.

Built from one publication (the current one, or as of an id or date), never from the working
warehouse: KPI table against the contract with status and bonus/penalty, trends (12 months; day
by day within the month while fewer than two months are published), the load profiles
("serpents de charge") of the busiest lines, the car-park occupancy heat map,
fleet availability and maintenance compliance, data-delivery compliance, and a lineage footer
(publication, contract version, deliveries). Charts are inline SVG: no script, readable in print.
"""

from __future__ import annotations

import html
import logging
from datetime import date

import duckdb

from citylake.consumers import maps
from citylake.core.duck import load_extension
from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage
from ingestion import registry

E = html.escape
log = logging.getLogger("citylake.reports")
STATUS_FR = {"met": "atteint", "tolerated": "toléré", "missed": "non atteint", "not_computable": "non calculable"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1c2733;
margin:2rem auto;max-width:1050px;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}
h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:2px solid #dde3ea;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #dde3ea;padding:.35rem .5rem;text-align:left}
th{background:#f2f5f8} .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.met{color:#1d7a3a;font-weight:600} .missed{color:#b3261e;font-weight:600} .tolerated{color:#9a6700;font-weight:600}
.not_computable{color:#5b6673;font-style:italic} .muted{color:#5b6673;font-size:.85rem} figure{margin:1rem 0}
figcaption{font-size:.85rem;color:#5b6673} svg text{font-family:inherit}
footer{margin-top:3rem;border-top:1px solid #dde3ea;padding-top:1rem;font-size:.8rem;color:#5b6673;word-break:break-all}
@page{size:A4;margin:14mm 12mm}
@media print{html{font-size:11px} body{margin:0;max-width:none} h2{break-after:avoid} figure,table{break-inside:avoid}
svg{max-width:100%;height:auto}}
"""


def _fmt(value, unit: str = "rate") -> str:
    if value is None:
        return "—"
    if unit == "rate":
        return f"{value * 100:.2f} %".replace(".", ",")
    if unit == "count":
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:,.2f}".replace(",", " ").replace(".", ",")


def _reason(kpi: dict) -> str:
    """Return the muted line saying why a KPI could not be computed (nothing for the others)."""
    if kpi["status"] != "not_computable":
        return ""
    return "<br><span class=muted>" + html.escape(kpi["not_computable_reason"] or "") + "</span>"


def _eur(value) -> str:
    return (f"{value:+,.2f} €").replace(",", " ").replace(".", ",") if value is not None else "—"


def line_chart(
    points: list[tuple[str, float | None]], target: float | None, minimum: float | None, width=620, height=150
) -> str:
    """An SVG line of values (months, or days) with the target and minimum as dashed lines."""
    vals = [v for _, v in points if v is not None] + [x for x in (target, minimum) if x is not None]
    if not vals:
        return "<p class='muted'>pas de valeur</p>"
    lo, hi = min(vals), max(vals)
    lo, hi = (lo - 0.01, hi + 0.01) if hi - lo < 1e-9 else (lo - (hi - lo) * 0.1, hi + (hi - lo) * 0.1)
    pad, right = 40, 160  # right: room for the reference lines' labels and values
    n = max(len(points) - 1, 1)

    def xy(i, v):
        return pad + i * (width - pad - right) / n, height - 25 - (v - lo) / (hi - lo) * (height - 40)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    refs = [(target, "#1d7a3a", "objectif"), (minimum, "#b3261e", "minimum")]
    if target is not None and minimum is not None and abs(target - minimum) < 1e-9:
        refs = [(target, "#1d7a3a", "objectif = minimum")]
    for ref, color, label in refs:
        if ref is not None:
            _, y = xy(0, ref)
            parts.append(
                f'<line x1="{pad}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                'stroke-dasharray="4 3"/>'
                f'<text x="{width - right + 4}" y="{y + 4:.1f}" font-size="10" fill="{color}">{label} '
                f"{_fmt(ref)}</text>"
            )
    pts = [(xy(i, v), v) for i, (_, v) in enumerate(points) if v is not None]
    if len(pts) > 1:
        parts.append(
            '<polyline fill="none" stroke="#1f5fa8" stroke-width="2" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for (x, y), _ in pts)
            + '"/>'
        )
    for (x, y), v in pts:
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1f5fa8"><title>{_fmt(v)}</title></circle>')
    step = -(-len(points) // 12)  # at most about 12 labels: a month of days stays readable
    for i, (label, _) in enumerate(points):
        if i % step:
            continue
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{E(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def load_profile_chart(rows: list[tuple], width=960, height=260) -> str:
    """Serpent de charge: stops along x, mean load as bars, p90 as a line, capacity dashed."""
    if not rows:
        return "<p class='muted'>pas de profil</p>"
    top = max(max(r[2] or 0, r[3] or 0, r[4] or 0) for r in rows) * 1.1 or 1
    pad_l, pad_b = 40, 70
    bw = (width - pad_l - 10) / len(rows)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    p90 = []
    for i, (name, _seq, mean, p90_load, _cap) in enumerate(rows):
        x = pad_l + i * bw
        h = (mean or 0) / top * (height - pad_b - 10)
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{height - pad_b - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#7aa7d6"><title>{E(name)} : {mean:.1f} en moyenne</title></rect>'
        )
        p90.append((x + bw / 2, height - pad_b - (p90_load or 0) / top * (height - pad_b - 10)))
        if len(rows) <= 45:
            parts.append(
                f'<text transform="translate({x + bw / 2:.1f},{height - pad_b + 8}) rotate(60)" '
                f'font-size="8">{E(name[:22])}</text>'
            )
    parts.append(
        '<polyline fill="none" stroke="#1c2733" stroke-width="1.5" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in p90)
        + '"/>'
    )
    cap = max((r[4] or 0) for r in rows)
    if cap:
        y = height - pad_b - cap / top * (height - pad_b - 10)
        parts.append(
            f'<line x1="{pad_l}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b3261e" stroke-dasharray="5 3"/>'
            f'<text x="{pad_l + 2}" y="{y - 3:.1f}" font-size="10" fill="#b3261e">capacité {cap:.0f}</text>'
        )
    parts.append('<text x="4" y="14" font-size="10">voyageurs</text></svg>')
    return "".join(parts)


def heat_map(rows: list[tuple[str, int, float | None]]) -> str:
    """Car park x local hour, mean occupancy rate as colour."""
    if not rows:
        return "<p class='muted'>pas de relevé</p>"
    parks = sorted({r[0] for r in rows})
    cell = {(r[0], r[1]): r[2] for r in rows}
    w, h, left = 28, 16, 200
    parts = [f'<svg viewBox="0 0 {left + 24 * w + 10} {len(parks) * h + 30}" width="100%" role="img">']
    for j, park in enumerate(parks):
        parts.append(f'<text x="{left - 4}" y="{j * h + 12}" font-size="10" text-anchor="end">{E(park[:32])}</text>')
        for hour in range(24):
            v = cell.get((park, hour))
            color = (
                "#eeeeee"
                if v is None
                else f"hsl({int(120 - 120 * min(max(v, 0), 1))},70%,{int(85 - 35 * min(max(v, 0), 1))}%)"
            )
            label = "sans relevé" if v is None else f"{v * 100:.0f} %"
            parts.append(
                f'<rect x="{left + hour * w}" y="{j * h}" width="{w - 1}" height="{h - 1}" '
                f'fill="{color}"><title>{E(park)} {hour} h : {label}</title></rect>'
            )
    for hour in range(0, 24, 2):
        parts.append(
            f'<text x="{left + hour * w + w / 2}" y="{len(parks) * h + 12}" font-size="10" '
            f'text-anchor="middle">{hour}h</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def trend_section(con: duckdb.DuckDBPyConnection, operator: str, month: date, kpi_rows: list[dict]) -> str:
    """The KPIs' trends: monthly over the 12 months to ``month`` once two months are published;
    before that, day by day within the month (one dot would say nothing). Thresholds are the
    month's (a day's value is no contract figure: the contract judges months)."""
    months = con.execute(
        "select count(distinct month) from mart_contract_kpis where operator = ? and month <= ?", [operator, month]
    ).fetchone()[0]
    has_daily = con.execute(
        "select count(*) from information_schema.tables where table_name = 'mart_contract_kpis_daily'"
    ).fetchone()[0]
    thresholds = {k["kpi_code"]: (k["label"], k["minimum"], k["target"]) for k in kpi_rows}
    if months < 2 and has_daily:
        title = f"Évolution jour par jour en {month:%m/%Y} (moins de deux mois publiés)"
        sql, label_format = (
            "select kpi_code, service_date, value from mart_contract_kpis_daily where operator = ? "
            "and service_date >= ? and service_date < ? + interval 1 month order by kpi_code, service_date",
            "%d/%m",
        )
    else:
        title = "Évolution sur 12 mois"
        sql, label_format = (
            "select kpi_code, month, value from mart_contract_kpis where operator = ? "
            "and month between ? - interval 11 month and ? order by kpi_code, month",
            "%m/%y",
        )
    series: dict[str, list[tuple[str, float | None]]] = {}
    for code, period, value in con.execute(sql, [operator, month, month]).fetchall():
        series.setdefault(code, []).append((period.strftime(label_format), value))
    charts = []
    for code, points in series.items():
        label, minimum, target = thresholds.get(code, (code, None, None))
        charts.append(
            f"<figure data-trend='{E(code)}' data-points='{len(points)}'>{line_chart(points, target, minimum)}"
            f"<figcaption>{E(label)}</figcaption></figure>"
        )
    monthly_only = [label for code, (label, _, _) in thresholds.items() if code not in series]
    if monthly_only and months < 2 and has_daily:
        charts.append("<p class='muted'>Mesurés au mois seulement : " + E(", ".join(monthly_only)) + ".</p>")
    if not charts:
        charts.append("<p class='muted'>aucune valeur publiée</p>")
    return f"<h2>{E(title)}</h2>" + "".join(charts)


def kpi_figures(con: duckdb.DuckDBPyConnection, operator: str, month: date) -> dict[str, tuple]:
    """An operator's KPIs of a month in the publication ``con`` reads: code -> (label, value, status,
    amount in euros)."""
    rows = con.execute(
        "select kpi_code, label, value, status, amount_eur from mart_contract_kpis where operator = ? and month = ?",
        [operator, month],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def comparison_section(then: dict[str, tuple], now: dict[str, tuple], then_pub: dict, now_pub: dict) -> str:
    """The KPIs "as published then" beside "as recomputed now" (after a rebuild: a change of method,
    of contract rule or of reference data), with the difference of each value and amount."""

    def pub(p: dict) -> str:
        return f"{E(p.get('publication_id', '?'))} ({E(str(p.get('published_at', '?'))[:10])})"

    rows = []
    for code in sorted(set(then) | set(now)):
        t, n = then.get(code), now.get(code)
        label = (n or t)[0]
        dv = None if not (t and n) or t[1] is None or n[1] is None else n[1] - t[1]
        da = None if not (t and n) or t[3] is None or n[3] is None else n[3] - t[3]
        changed = t is None or n is None or t[1:] != n[1:]  # value, status or amount, or a KPI on one side only
        rows.append(
            f"<tr data-kpi='{E(code)}' data-changed='{str(bool(changed)).lower()}'><td>{E(label)}</td>"
            f"<td class='num'>{_fmt(t[1]) if t else '—'}</td><td>{STATUS_FR[t[2]] if t else '—'}</td>"
            f"<td class='num'>{_eur(t[3]) if t else '—'}</td>"
            f"<td class='num'>{_fmt(n[1]) if n else '—'}</td><td>{STATUS_FR[n[2]] if n else '—'}</td>"
            f"<td class='num'>{_eur(n[3]) if n else '—'}</td>"
            f"<td class='num'>{'—' if dv is None else f'{dv:+.4f}'.replace('.', ',')}</td>"
            f"<td class='num'>{'—' if da is None else _eur(da)}</td></tr>"
        )
    return (
        "<h2>Tel que publié alors, tel que recalculé maintenant</h2>"
        f"<p class='muted'>Publié alors : {pub(then_pub)} · recalculé : {pub(now_pub)}. Chaque publication reste "
        "lisible à son identifiant ; une différence vient d'un changement de méthode, de règle ou de référentiel "
        "entre les deux (leurs fiches de registre disent le code et les règles de chacune).</p>"
        "<table><tr><th>indicateur</th><th>valeur alors</th><th>statut alors</th><th>montant alors</th>"
        "<th>valeur maintenant</th><th>statut maintenant</th><th>montant maintenant</th><th>écart de valeur</th>"
        f"<th>écart de montant</th></tr>{''.join(rows)}</table>"
    )


RECONCILIATION_FR = {
    "within_tolerance": "dans la tolérance",
    "outside_tolerance": "hors tolérance",
    "figure_missing": "non déclaré",
    "not_declared": "rapport non remis",
    "not_due_yet": "pas encore dû",
    "not_recomputable": "non recalculable",
}
STATUS_CLASS = {"outside_tolerance": "missed", "within_tolerance": "met"}
REPORT_CLASS = {"on_time": "met", "not_due_yet": "not_computable"}
REPORT_FR = {
    "on_time": "remis à temps",
    "late": "remis en retard",
    "not_declared": "non remis",
    "not_due_yet": "pas encore dû",
}
EVIDENCE_COLUMNS = (
    "figure_code",
    "route_short_name",
    "service_date",
    "evidence_kind",
    "subject",
    "quantity",
    "unit",
    "detail",
    "source_sha256",
    "source_row",
)


def _has(con: duckdb.DuckDBPyConnection, view: str) -> bool:
    """Whether the publication read has this mart (older publications lack the newer ones)."""
    return bool(con.execute("select count(*) from duckdb_views() where view_name = ?", [view]).fetchone()[0])


def _figure(value, unit: str | None) -> str:
    return _fmt(value, {"ratio": "rate", "nombre": "count"}.get(unit or "", "n"))


def declared_section(con: duckdb.DuckDBPyConnection, operator: str, month: date, annex: str | None) -> str:
    """The page "Déclaré / recalculé": each figure of the operator's monthly report beside the
    city's recomputation, the gap, the tolerance, the status, the euro effect on the contract
    grid and the evidence rows (in the annex CSV ``annex``); the lines outside tolerance; and
    the months × figures where gaps recur. Empty for a publication without the mart."""
    from ingestion.declared import FIGURES

    if not _has(con, "mart_contract_reconciliation"):
        return ""
    rows = con.execute(
        "select figure_code, declared_value, recomputed_value, difference, tolerance, status, euro_effect_eur, "
        "evidence_rows, unit, declared_row, report_status, report_due_at, report_delivered_at, route_short_name "
        "from mart_contract_reconciliation where operator = ? and month = ? order by route_short_name nulls first, "
        "figure_code",
        [operator, month],
    ).fetchall()
    if not rows:
        return ""
    units = {code: f.unit for code, f in FIGURES.items()}
    network = [r for r in rows if r[13] is None]
    lines = [r for r in rows if r[13] is not None and r[5] == "outside_tolerance"]
    report_status, due, delivered = network[0][10], network[0][11], network[0][12]
    when = f"reçu le {delivered:%d/%m/%Y %H:%M}, " if delivered else ""
    head = (
        f"<p>Rapport mensuel d'exploitation : <span class='{REPORT_CLASS.get(report_status, 'missed')}'>"
        f"{REPORT_FR[report_status]}</span> "
        f"({when}dû le {due:%d/%m/%Y %H:%M}, heure locale).</p>"
        if due
        else ""
    )

    def row(r, with_line: bool = False) -> str:
        code, declared, recomputed, diff, tol, status, euros, evidence = r[:8]
        unit = units.get(code)
        label = FIGURES[code].label if code in FIGURES else code
        cells = f"<td>{E(r[13])}</td>" if with_line else ""
        return (
            f"<tr data-figure='{E(code)}' data-status='{E(status)}' data-euros='{'' if euros is None else euros}'>"
            f"{cells}<td>{E(label)}</td><td class='num'>{_figure(declared, unit)}</td>"
            f"<td class='num'>{_figure(recomputed, unit)}</td><td class='num'>{_figure(diff, unit)}</td>"
            f"<td class='num muted'>± {_figure(tol, unit)}</td>"
            f"<td class='{STATUS_CLASS.get(status, 'not_computable')}'>"
            f"{RECONCILIATION_FR[status]}</td><td class='num'>{_eur(euros) if euros is not None else ''}</td>"
            f"<td class='num muted'>{evidence or ''}</td></tr>"
        )

    effect = sum(r[6] or 0 for r in network)
    table = (
        "<table><tr><th>chiffre</th><th>déclaré</th><th>recalculé</th><th>écart</th><th>tolérance</th>"
        "<th>statut</th><th>effet en euros</th><th>preuves</th></tr>"
        + "".join(row(r) for r in network)
        + f"<tr><th colspan='6'>effet total sur le bonus / la pénalité du mois</th><th class='num'>{_eur(effect)}</th>"
        "<th></th></tr></table>"
    )
    by_line = (
        "<h3>Lignes hors tolérance</h3><table><tr><th>ligne</th><th>chiffre</th><th>déclaré</th><th>recalculé</th>"
        "<th>écart</th><th>tolérance</th><th>statut</th><th></th><th>preuves</th></tr>"
        + "".join(row(r, True) for r in lines)
        + "</table>"
        if lines
        else ""
    )
    link = (
        f"<p>Les preuves ligne à ligne (courses, véhicules, départs, avec la livraison et la ligne d'origine) : "
        f"<code>{E(annex)}</code>, à côté de ce rapport (CSV, à joindre à un courrier).</p>"
        if annex
        else ""
    )
    readings = ""
    columns = {r[0] for r in con.execute("describe mart_contract_kpis").fetchall()}
    if "value_corroborated" in columns:  # publications before the corroboration have one reading
        offer = con.execute(
            "select value_as_declared, amount_as_declared_eur, value_corroborated, amount_corroborated_eur, "
            "external_losses_binding from mart_contract_kpis where operator = ? and month = ? "
            "and kpi_code = 'OFFER_DELIVERED'",
            [operator, month],
        ).fetchone()
        doubted = sum(r[7] or 0 for r in network if r[0] == "courses_perdues_externes")
        if offer:
            readings = (
                f"<p>Pertes que l'opérateur classe externes non corroborées par les données de la collectivité : "
                f"{doubted} (aucune autre course de la ligne en retard dans l'heure ; preuves en annexe). Taux de "
                f"réalisation de l'offre tel que déclaré : {_fmt(offer[0])} ({_eur(offer[1])}) ; ces pertes comptées "
                f"internes : {_fmt(offer[2])} ({_eur(offer[3])}). Le contrat retient la lecture "
                f"« {'corroborée' if offer[4] == 'corroborated' else 'déclarée'} ».</p>"
            )
    return (
        "<h2>Déclaré / recalculé</h2>"
        "<p class='muted'>Les chiffres du rapport mensuel de l'opérateur, face à ceux que la collectivité recalcule "
        "à partir des données qu'il a livrées. L'effet en euros est le bonus ou la pénalité que la grille du "
        "contrat donne sur le chiffre déclaré, moins celui qu'elle donne sur le chiffre recalculé.</p>"
        + head
        + table
        + readings
        + by_line
        + link
        + recurring_section(con, operator, month)
    )


def recurring_section(con: duckdb.DuckDBPyConnection, operator: str, month: date) -> str:
    """Months × figures of the twelve months to ``month``: where the gaps recur."""
    cells = con.execute(
        "select month, figure_code, status from mart_contract_reconciliation where operator = ? and "
        "route_short_name is null and month > ? - interval 12 month and month <= ? order by month, figure_code",
        [operator, month, month],
    ).fetchall()
    months = sorted({m for m, _, _ in cells})
    figures = sorted({f for _, f, _ in cells})
    status = {(m, f): s for m, f, s in cells}
    mark = {"outside_tolerance": ("✗", "missed"), "within_tolerance": ("✓", "met")}
    from ingestion.declared import FIGURES

    body = "".join(
        f"<tr><td>{E(FIGURES[f].label if f in FIGURES else f)}</td>"
        + "".join(
            f"<td class='{mark.get(status.get((m, f)), ('', 'not_computable'))[1]}' style='text-align:center'>"
            f"{mark.get(status.get((m, f)), ('·', ''))[0]}</td>"
            for m in months
        )
        + "</tr>"
        for f in figures
    )
    head = "".join(f"<th>{m:%m/%y}</th>" for m in months)
    return (
        "<h3>Où les écarts reviennent</h3><table><tr><th>chiffre</th>" + head + "</tr>" + body + "</table>"
        "<p class='muted'>✗ hors tolérance · ✓ dans la tolérance · · non déclaré ou non recalculable.</p>"
    )


def write_annual_check(
    storage: LakeStorage, con: duckdb.DuckDBPyConnection, operator: str, year: int, pointer: dict
) -> str:
    """The city's annual check of the operator's rapport annuel: every monthly figure it declared
    in ``year`` reconciled, the months and figures outside tolerance first (then by euro effect),
    each month's report status, and the year's euro effect. Returns the page's key."""
    from ingestion.declared import FIGURES

    publication = pointer.get("groups", {}).get("contract", {})
    if not _has(con, "mart_contract_reconciliation"):
        raise ValueError("this publication has no mart_contract_reconciliation (published before issue #33)")
    rows = con.execute(
        "select month, route_short_name, figure_code, declared_value, recomputed_value, difference, tolerance, "
        "status, euro_effect_eur, evidence_rows, report_status from mart_contract_reconciliation "
        "where operator = ? and year(month) = ? order by (status = 'outside_tolerance') desc, "
        "abs(coalesce(euro_effect_eur, 0)) desc, month, figure_code, route_short_name nulls first",
        [operator, year],
    ).fetchall()
    units = {code: f.unit for code, f in FIGURES.items()}
    months = sorted({r[0] for r in rows})
    statuses = {r[0]: r[10] for r in rows}
    gaps = [r for r in rows if r[7] in ("outside_tolerance", "not_declared", "figure_missing")]
    effect = sum(r[8] or 0 for r in rows if r[1] is None)
    body = "".join(
        f"<tr data-status='{E(r[7])}'><td>{r[0]:%m/%Y}</td><td>{E(r[1] or 'réseau')}</td>"
        f"<td>{E(FIGURES[r[2]].label if r[2] in FIGURES else r[2])}</td>"
        f"<td class='num'>{_figure(r[3], units.get(r[2]))}</td><td class='num'>{_figure(r[4], units.get(r[2]))}</td>"
        f"<td class='num'>{_figure(r[5], units.get(r[2]))}</td>"
        f"<td class='{STATUS_CLASS.get(r[7], 'not_computable')}'>{RECONCILIATION_FR[r[7]]}</td>"
        f"<td class='num'>{_eur(r[8]) if r[8] is not None else ''}</td><td class='num muted'>{r[9] or ''}</td></tr>"
        for r in rows
    )
    reports = " · ".join(f"{m:%m/%Y} : {REPORT_FR[statuses[m]]}" for m in months)
    title = f"Contrôle annuel du rapport du délégataire — opérateur {operator} — {year}"
    page = (
        "<!doctype html><html lang='fr'><head><meta "
        f"charset='utf-8'><title>{E(title)}</title><style>{CSS}</style></head><body><h1>{E(title)}</h1>"
        "<p class='muted'>Chaque chiffre mensuel déclaré par l'opérateur, face au chiffre recalculé par la "
        "collectivité à partir des données qu'il a livrées ; les écarts hors tolérance d'abord.</p>"
        f"<p>{len(months)} mois · {len(gaps)} écart(s) hors tolérance ou chiffre(s) manquant(s) · effet sur les "
        f"bonus et pénalités de l'année : <strong>{_eur(effect)}</strong></p><p>Rapports mensuels : {reports}</p>"
        "<table><tr><th>mois</th><th>ligne</th><th>chiffre</th><th>déclaré</th><th>recalculé</th><th>écart</th>"
        f"<th>statut</th><th>effet en euros</th><th>preuves</th></tr>{body}</table>"
        + (recurring_section(con, operator, months[-1]) if months else "")
        + f"<footer>Publication {E(publication.get('publication_id', '?'))} du "
        f"{E(publication.get('published_at', '?'))}</footer></body></html>"
    )
    k = key(
        Zone.REPORTS,
        "contract",
        {"operator": operator, "year": str(year)},
        f"{publication.get('publication_id', 'unpublished')}.html",
    )
    storage.put_bytes(k, page.encode("utf-8"), metadata={"content-type": "text/html"}, overwrite=True)
    return k


def evidence_csv(con: duckdb.DuckDBPyConnection, operator: str, month: date) -> bytes | None:
    """The month's evidence rows of an operator, as the annex CSV of its report (None: no mart)."""
    if not _has(con, "fct_reconciliation_evidence"):
        return None
    from citylake.consumers.opendata import neutralise_formulas

    frame = con.execute(
        f"select {', '.join(EVIDENCE_COLUMNS)} from fct_reconciliation_evidence where operator = ? and month = ? "
        "order by figure_code, service_date, evidence_kind, subject",
        [operator, month],
    ).pl()
    return neutralise_formulas(frame).write_csv(separator=";").encode("utf-8")


PEAK_BANDS = ("07-09 pointe du matin", "16-19 pointe du soir")
SLOWEST = 12  # segments listed on the slow map
SLOW_MIN_OBSERVATIONS = 5  # a median speed on fewer runs is not a fact
SLOW_MIN_LENGTH_M = 150  # shorter segments' speeds are mostly dwell and AVL timing


def map_section(con: duckdb.DuckDBPyConnection, month: date, lines: list[str]) -> str:
    """The two maps of the month (issue #34): the busiest lines' load by segment at the morning
    peak of the usual day type, and the network's slowest segments at peak; empty for a
    publication without geometry."""
    if not (_has(con, "mart_segment_loads") and _has(con, "mart_segment_speeds")):
        return ""
    load_extension(con, "spatial")
    usual = con.execute(
        "select day_type from mart_segment_loads where month = ? "
        "group by 1 order by sum(trips_observed) desc, 1 limit 1",
        [month],
    ).fetchone()
    if usual is None:
        return ""
    day_type = usual[0]
    network = [
        maps.coordinates(g)
        for (g,) in con.execute(
            "select st_asgeojson(st_geomfromwkb(any_value(geometry))) from mart_segment_loads "
            "where month = ? and geometry is not null "
            "group by route_short_name, direction_id, from_stop_id, to_stop_id",
            [month],
        ).fetchall()
    ]
    loads = [
        {
            "line": line,
            "from_name": a,
            "to_name": b,
            "mean_load": mean,
            "p90_load": p90,
            "capacity": cap,
            "coords": maps.coordinates(g),
        }
        for line, a, b, mean, p90, cap, g in con.execute(
            f"""select route_short_name, any_value(from_stop_name), any_value(to_stop_name),
                       sum(mean_load * trips_observed) / sum(trips_observed), max(p90_load), avg(mean_capacity),
                       st_asgeojson(st_geomfromwkb(any_value(geometry)))
                from mart_segment_loads
                where month = ? and day_type = ? and time_band = ? and geometry is not null
                  and route_short_name in ({", ".join("?" for _ in lines) or "null"})
                group by route_short_name, direction_id, from_stop_id, to_stop_id""",
            [month, day_type, PEAK_BANDS[0], *lines],
        ).fetchall()
    ]
    slow = [
        {
            "line": line,
            "from_name": a,
            "to_name": b,
            "median_kmh": med,
            "p20_kmh": p20,
            "observations": n,
            "band": band,
            "coords": maps.coordinates(g),
        }
        for line, a, b, band, med, p20, n, g in con.execute(
            f"""select string_agg(distinct route_short_name, ', ' order by route_short_name),
                       any_value(from_stop_name), any_value(to_stop_name),
                       string_agg(distinct time_band, ', ' order by time_band),
                       sum(median_speed_kmh * observations) / sum(observations),
                       sum(p20_speed_kmh * observations) / sum(observations),
                       sum(observations), st_asgeojson(st_geomfromwkb(any_value(geometry)))
                from mart_segment_speeds
                where month = ? and day_type = ? and time_band in ({", ".join("?" for _ in PEAK_BANDS)})
                  and observations > 0 and length_m >= ? and geometry is not null
                group by from_stop_id, to_stop_id  -- one place, whatever the lines that run it
                having sum(observations) >= ?
                order by 5, 1, 2 limit {SLOWEST}""",
            [month, day_type, *PEAK_BANDS, SLOW_MIN_LENGTH_M, SLOW_MIN_OBSERVATIONS],
        ).fetchall()
    ]
    rows = "".join(
        f"<tr><td class='num'>{i}</td><td>{E(s['line'])}</td><td>{E(s['from_name'] or '')} → "
        f"{E(s['to_name'] or '')}</td><td>{E(s['band'])}</td><td class='num'>{_kmh(s['median_kmh'])}</td>"
        f"<td class='num'>{_kmh(s['p20_kmh'])}</td><td class='num'>{s['observations']}</td></tr>"
        for i, s in enumerate(slow, start=1)
    )
    shown = ", ".join(lines)
    return (
        "<h2>Cartes du mois</h2>"
        f"<figure class='map'>{maps.load_map(network, loads, lines, 'charge par tronçon')}"
        f"<figcaption>Charge moyenne à bord par tronçon, lignes {E(shown)}, {E(PEAK_BANDS[0])}, jour type "
        f"{E(day_type)} : épaisseur proportionnelle à la charge, liseré rouge là où le 90e centile atteint la "
        "capacité du véhicule ; réseau en gris. Tracés GTFS (shapes) ; distances le long du tracé."
        "</figcaption></figure>"
        f"<figure class='map'>{maps.slow_map(network, slow, 'tronçons les plus lents')}"
        f"<figcaption>Les {len(slow)} tronçons les plus lents aux heures de pointe (jour type {E(day_type)}, "
        f"au moins {SLOW_MIN_OBSERVATIONS} passages, tronçons de {SLOW_MIN_LENGTH_M} m et plus), toutes lignes "
        "confondues : vitesse de marche médiane (moyenne des médianes pondérée par les passages).</figcaption></figure>"
        + (
            "<table><tr><th>n°</th><th>lignes</th><th>tronçon</th><th>tranches</th><th>médiane km/h</th>"
            f"<th>20e centile km/h</th><th>passages</th></tr>{rows}</table>"
            if slow
            else "<p class='muted'>aucun tronçon assez observé aux heures de pointe</p>"
        )
    )


def _kmh(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}".replace(".", ",")


def build_report(
    con: duckdb.DuckDBPyConnection,
    operator: str,
    month: date,
    publication: dict,
    comparison: str = "",
    annex: str | None = None,
) -> tuple[str, list[dict]]:
    """Return the report page and the KPI rows it shows, from published views in ``con``;
    ``comparison`` (:func:`comparison_section`) follows the KPI table."""
    kpis = con.execute(
        "select kpi_code, label, unit, value, numerator, denominator, minimum, target, status, amount_eur, cap_eur, "
        "is_capped, not_computable_reason, contract_version, source_deliveries, source_sha256s, publication_id "
        "from mart_contract_kpis where operator = ? and month = ? order by kpi_code",
        [operator, month],
    ).fetchall()
    cols = [
        "kpi_code",
        "label",
        "unit",
        "value",
        "numerator",
        "denominator",
        "minimum",
        "target",
        "status",
        "amount_eur",
        "cap_eur",
        "is_capped",
        "not_computable_reason",
        "contract_version",
        "source_deliveries",
        "source_sha256s",
        "publication_id",
    ]
    kpi_rows = [dict(zip(cols, r, strict=True)) for r in kpis]
    sections = []
    rows_html = "".join(
        f"<tr data-kpi='{E(k['kpi_code'])}' data-value='{'' if k['value'] is None else k['value']}' "
        f"data-amount='{k['amount_eur']}'>"
        f"<td>{E(k['label'])}</td><td class='num'>{_fmt(k['value'])}</td>"
        f"<td class='num'>{_fmt(k['minimum'])}</td><td class='num'>{_fmt(k['target'])}</td>"
        f"<td class='{k['status']}'>{STATUS_FR[k['status']]}{_reason(k)}</td>"
        f"<td class='num'>{_eur(k['amount_eur'])}{' (plafonné)' if k['is_capped'] else ''}</td>"
        f"<td class='num muted'>{'' if k['numerator'] is None else _fmt(k['numerator'], 'n')} / "
        f"{'' if k['denominator'] is None else _fmt(k['denominator'], 'n')}</td></tr>"
        for k in kpi_rows
    )
    total = sum(k["amount_eur"] or 0 for k in kpi_rows)
    sections.append(f"""<h2>Indicateurs contractuels</h2>
<table><tr><th>indicateur</th><th>valeur</th><th>seuil minimum</th><th>objectif</th><th>statut</th><th>bonus /
pénalité</th><th>numérateur / dénominateur</th></tr>
{rows_html}<tr><th colspan="5">total du mois</th><th class="num">{_eur(total)}</th><th></th></tr></table>""")
    if comparison:
        sections.append(comparison)
    sections.append(declared_section(con, operator, month, annex))
    sections.append(trend_section(con, operator, month, kpi_rows))

    first, last = month, (month.replace(day=28) + __import__("datetime").timedelta(days=4)).replace(day=1)
    if operator in registry.operators_of_group("transit"):  # an operator that delivers the network's data
        lines = con.execute(
            "select route_short_name from fct_stop_visit_loads where service_date >= ? and service_date < ? "
            "group by 1 order by sum(boardings_estimated) desc limit 3",
            [first, last],
        ).fetchall()
        for (line,) in lines:
            profile = con.execute(
                """with usual as (  -- the month's most frequent day type, on its main network version
                       select day_type, feed_version from mart_bus_load_profile
                       where route_short_name = ? and month = ? and direction_id = 0
                       group by all order by sum(trips_observed) desc, day_type, feed_version limit 1
                   )
                   select any_value(stop_name), stop_sequence, sum(mean_load * trips_observed) / sum(trips_observed),
                          max(p90_load), max(mean_capacity)
                   from mart_bus_load_profile inner join usual using (day_type, feed_version)
                   where route_short_name = ? and month = ? and direction_id = 0
                   group by stop_sequence order by stop_sequence""",
                [line, month, line, month],
            ).fetchall()
            sections.append(
                f"<h2>Serpent de charge — ligne {E(line)}, sens aller</h2>"
                f"<figure>{load_profile_chart(profile)}<figcaption>Charge moyenne à bord après chaque arrêt "
                "(barres), 90e centile (trait), capacité du véhicule (tirets), jour type le plus "
                "fréquent.</figcaption></figure>"
            )
        sections.append(map_section(con, month, [line for (line,) in lines]))
        columns = {r[0] for r in con.execute("describe fct_stop_visit_loads").fetchall()}
        if "is_over_capacity" in columns:  # publications before issue #31 have no flag
            over, visits, worst = con.execute(
                "select count(*) filter (where is_over_capacity), count(*), "
                "max(load_estimated / nullif(vehicle_capacity, 0)) filter (where is_over_capacity) "
                "from fct_stop_visit_loads where service_date >= ? and service_date < ?",
                [first, last],
            ).fetchone()
            sections.append(
                f"<p>Charges estimées au-delà de la capacité du véhicule : {_fmt(over, 'count')} passages sur "
                f"{_fmt(visits, 'count')}"
                + (f" (jusqu'à {worst:.2f} × la capacité)".replace(".", ",") if over else "")
                + " ; gardées telles qu'estimées et signalées (<code>is_over_capacity</code>).</p>"
            )
        avail = con.execute(
            "select service_date, availability_rate, available_at_peak, vehicles_required_at_peak "
            "from mart_fleet_availability_daily where service_date >= ? and service_date < ? order by 1",
            [first, last],
        ).fetchall()
        maint = con.execute(
            "select sum(preventive_within_tolerance), sum(preventive_jobs), sum(failures), sum(km), "
            "sum(inspections_late) from mart_maintenance_monthly where month = ?",
            [month],
        ).fetchone()
        sections.append(
            "<h2>Parc et maintenance</h2>"
            f"<figure>{line_chart([(f'{d:%d/%m}', r) for d, r, _, _ in avail], None, None, 960, 150)}"
            "<figcaption>Disponibilité du parc à l'heure de pointe (véhicules disponibles / parc), par "
            "jour.</figcaption></figure>"
            f"<p>Maintenance préventive dans la tolérance : {maint[0] or 0} sur {maint[1] or 0} ; pannes : "
            f"{maint[2] or 0} "
            f"pour {_fmt(maint[3] or 0, 'n')} km ; contrôles réglementaires en retard : {maint[4] or 0}.</p>"
        )
    else:
        heat = con.execute(
            "select facility_name, local_hour, avg(mean_occupancy_rate) from mart_parking_occupancy_hourly "
            "where operator = ? and service_date >= ? and service_date < ? group by all",
            [operator, first, last],
        ).fetchall()
        sections.append(
            "<h2>Occupation des parcs (heure locale)</h2>"
            f"<figure>{heat_map(heat)}<figcaption>Taux d'occupation moyen du mois par parc et par heure "
            "(vert : libre, rouge : saturé ; gris : aucun relevé exploitable).</figcaption></figure>"
        )
    delivery = next((k for k in kpi_rows if k["kpi_code"] == "DATA_DELIVERY"), None)
    if delivery:
        sections.append(
            f"<h2>Livraison des données</h2><p>{_fmt(delivery['numerator'], 'count')} livraisons quotidiennes "
            f"à l'heure et exploitables sur {_fmt(delivery['denominator'], 'count')} attendues "
            f"({_fmt(delivery['value'])}).</p>"
        )
    hashes = sorted({h for k in kpi_rows for h in (k["source_sha256s"] or "").split(",") if h})
    versions = sorted({k["contract_version"] for k in kpi_rows})
    footer = (
        f"<footer>Publication {E(publication.get('publication_id', '?'))} du "
        f"{E(publication.get('published_at', '?'))} · "
        f"contrat {E(', '.join(versions))} · {len(hashes)} livraisons (sha256) : "
        f"{E(' '.join(h[:16] for h in hashes))}</footer>"
    )
    title = f"Rapport mensuel — opérateur {operator} — {month:%m/%Y}"
    page = (
        "<!doctype html><html lang='fr'><head><meta "
        f"charset='utf-8'><title>{E(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{E(title)}</h1><p class='muted'>Indicateurs recalculés par la collectivité à partir des données "
        f"livrées par l'opérateur.</p>{''.join(sections)}{footer}</body></html>"
    )
    return page, kpi_rows


def write_report(
    storage: LakeStorage,
    con: duckdb.DuckDBPyConnection,
    operator: str,
    month: date,
    pointer: dict,
    then: tuple[duckdb.DuckDBPyConnection, dict] | None = None,
) -> str:
    """Write the report of one operator and month from the publication in ``pointer``; return its key.

    ``then`` (a connection on an earlier publication's views, and its pointer): the report also
    shows that publication's KPIs beside these, and is named after both."""
    publication = pointer.get("groups", {}).get("contract", {})
    comparison, suffix = "", ""
    if then is not None:
        then_pub = then[1].get("groups", {}).get("contract", {})
        comparison = comparison_section(
            kpi_figures(then[0], operator, month), kpi_figures(con, operator, month), then_pub, publication
        )
        suffix = f"__vs__{then_pub.get('publication_id', 'unpublished')}"
    name = f"{publication.get('publication_id', 'unpublished')}{suffix}"
    folder = {"operator": operator, "month": f"{month:%Y-%m}"}
    annex = evidence_csv(con, operator, month)
    annex_name = f"{name}__preuves.csv" if annex is not None else None
    if annex is not None:  # beside the page, which links it by name
        storage.put_bytes(
            key(Zone.REPORTS, "contract", folder, annex_name),
            annex,
            metadata={"content-type": "text/csv"},
            overwrite=True,
        )
    page, _ = build_report(con, operator, month, publication, comparison, annex_name)
    k = key(Zone.REPORTS, "contract", folder, f"{name}.html")
    storage.put_bytes(k, page.encode("utf-8"), metadata={"content-type": "text/html"}, overwrite=True)
    return k


def write_pdf(storage: LakeStorage, html_key: str, browser: str | None = None) -> str:
    """Print a written report to PDF (headless Chromium) beside its HTML; return the PDF's key."""
    from citylake.consumers.pdf import html_to_pdf

    pdf_key = html_key.removesuffix(".html") + ".pdf"
    storage.put_bytes(
        pdf_key,
        html_to_pdf(storage.get_bytes(html_key), browser),
        metadata={"content-type": "application/pdf"},
        overwrite=True,
    )
    return pdf_key


def pdf_wanted(settings) -> bool:
    """Whether reports are printed to PDF (``CITYLAKE_REPORT_PDF``: auto prints when a Chromium is found)."""
    from citylake.consumers.pdf import find_browser

    mode = settings.report_pdf
    found = find_browser(settings.chromium) is not None
    if mode == "auto" and not found:
        log.warning("contract reports not printed to PDF: no Chromium (CITYLAKE_CHROMIUM, or apt-get install chromium)")
    return mode == "always" or (mode == "auto" and found)


def write_month_to_date(
    settings, storage: LakeStorage, published_groups: list[str], service_dates: list[date]
) -> list[str]:
    """After a night that published contract KPIs, rewrite each operator's report for the months it touched.

    Returns the keys written: each report's HTML, then its PDF when printed (:func:`pdf_wanted`).
    The publication is already atomic and final; a report is derived from it and can be rebuilt
    at any time with ``citylake report --as-of``.
    """
    from citylake.core import duck
    from citylake.publish.reader import current, published_views

    if "contract" not in published_groups or not service_dates:
        return []
    pointer = current(storage)
    con = duck.connect(settings, storage)
    try:
        published_views(con, storage, pointer)
        months = sorted({d.replace(day=1) for d in service_dates})
        pairs = con.sql(
            "select distinct operator, month from mart_contract_kpis where list_contains(?, month) order by 1, 2",
            params=[months],
        ).fetchall()
        pages = [write_report(storage, con, op, month, pointer) for op, month in pairs]
    finally:
        con.close()
    if not pdf_wanted(settings):
        return pages
    return [k for page in pages for k in (page, write_pdf(storage, page, settings.chromium))]
