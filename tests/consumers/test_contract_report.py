"""The contract report's figures as published then, beside the same figures recomputed now."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st


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


_KPI = st.tuples(
    st.sampled_from(["Ponctualité", "Disponibilité"]),
    st.one_of(st.none(), st.floats(0, 1, allow_nan=False)),
    st.sampled_from(["met", "tolerated", "missed", "not_computable"]),
    st.one_of(st.none(), st.floats(-1e5, 1e5, allow_nan=False)),
)


@given(
    then=st.dictionaries(st.sampled_from(["A", "B", "C", "D"]), _KPI, max_size=4),
    now=st.dictionaries(st.sampled_from(["A", "B", "C", "D"]), _KPI, max_size=4),
)
def test_every_kpi_of_either_publication_shows_once_marked_changed_when_it_differs(then, now) -> None:
    """Whatever the two publications hold: each KPI code of either appears in one row, marked
    changed exactly when it is missing from one side or its value, status or amount differs."""
    from citylake.consumers.contract_report import comparison_section

    page = comparison_section(then, now, {"publication_id": "p-then"}, {"publication_id": "p-now"})
    for code in set(then) | set(now):
        assert page.count(f"data-kpi='{code}'") == 1
        t, n = then.get(code), now.get(code)
        differs = t is None or n is None or t[1:] != n[1:]
        assert f"data-kpi='{code}' data-changed='{str(differs).lower()}'" in page
    assert page.count("<tr data-kpi=") == len(set(then) | set(now))
