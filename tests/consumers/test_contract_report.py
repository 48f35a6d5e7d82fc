"""The contract report's figures as published then, beside the same figures recomputed now."""

from __future__ import annotations


def test_a_kpi_recomputed_shows_beside_its_figure_as_published_then() -> None:
    """The contract report's comparison (issue #32: after a rebuild): each KPI's value, status and
    amount then and now, the differences, and a KPI present in one publication only."""
    from citylake.consumers.contract_report import comparison_section

    then = {"PUNCT": ("Ponctualité", 0.91, "met", 1200.0), "OLD": ("Retiré", 0.5, "missed", -100.0)}
    now = {"PUNCT": ("Ponctualité", 0.88, "missed", -800.0), "NEW": ("Ajouté", None, "not_computable", None)}
    page = comparison_section(then, now, {"publication_id": "p-then"}, {"publication_id": "p-now"})
    punct = page.split("data-kpi='PUNCT'")[1].split("</tr>")[0]
    assert "data-changed='true'" in punct and "-0,0300" in punct and "-2 000,00 €" in punct
    assert "atteint" in punct and "non atteint" in punct
    assert "data-kpi='OLD' data-changed='true'" in page and "data-kpi='NEW' data-changed='true'" in page
    assert "p-then" in page and "p-now" in page
