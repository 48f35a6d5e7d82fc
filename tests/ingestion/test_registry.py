"""The registry: each fact once, and a configuration error says what to fix (never retried)."""

from __future__ import annotations

from pathlib import Path

import pytest

from citylake.core.errors import ConfigError, TransientError
from ingestion import registry
from ingestion.contracts import all_contracts


def test_facts_come_from_operators_yaml_and_the_contracts() -> None:
    assert registry.groups() == ("transit", "parking", "maintenance", "contract")
    assert registry.group_depends()["contract"] == ("transit", "parking", "maintenance")
    assert registry.feed_group("bus", "fleet") == "maintenance"
    assert registry.is_reference("bus", "gtfs") and not registry.is_reference("bus", "ticketing")
    assert registry.personal_feeds() == [("bus", "ticketing")]
    assert registry.operators_of_group("parking") == ["montpellier", "parking"]
    # every contract says its group, whether it is a reference, and where it is staged
    for c in all_contracts():
        assert c.group in registry.groups() and c.staged["dataset"] and c.staged["builder"], c.key


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operators.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("operators: {}\n", "needs an 'operators:' and a 'groups:' mapping"),
        ("groups: {a: {depends_on: [b]}}\noperators: {}\n", "group 'a' depends on unknown group(s) ['b']"),
        ("groups: {transit: {}}\noperators: {bus: {feeds: [gtfs]}}\n", "operator 'bus' has no 'drop'"),
        (
            "groups: {transit: {}}\noperators: {bus: {drop: {type: root}, feeds: [tram]}}\n",
            "lists feed 'tram', but there is no extract contract bus__tram.v1.yaml in ingestion/contracts/",
        ),
        (
            "groups: {transit: {}}\noperators: {bus: {drop: {type: root}, feeds: [fleet]}}\n",
            "group 'maintenance' is not one of ['transit']",
        ),
        ("groups: [\n", "cannot be read as YAML"),
    ],
)
def test_a_bad_registry_is_a_configuration_error_saying_what_to_fix(tmp_path, text, says) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        registry.load(path)
    assert says in str(caught.value)
    assert not isinstance(caught.value, TransientError)  # Airflow fails it at once, no retry
