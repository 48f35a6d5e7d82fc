"""The vacuum of the publications' docs pages: which go, which stay, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citylake.core.settings import Settings
from citylake.core.storage import open_storage
from citylake.publish.docs_site import docs_key
from citylake.publish.retention import kept_docs, vacuum_published

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def _publish(storage, pid: str, days_ago: int, code: str, groups: dict[str, str]) -> None:
    """A registry record (no mart: the docs vacuum reads only ids, dates and code versions) and its page."""
    storage.put_json(
        f"published/registry/{pid}.json",
        {
            "publication_id": pid,
            "created_at": (NOW - timedelta(days=days_ago)).isoformat(),
            "code_version": code,
            "current_after": {"groups": {g: {"publication_id": p, "marts": {}} for g, p in groups.items()}},
        },
    )
    storage.put_bytes(docs_key(pid), b"<html>docs</html>")


def test_vacuum_deletes_old_docs_pages_and_keeps_those_someone_needs(tmp_path) -> None:
    """Of six publications' pages, the vacuum deletes exactly the old ones nothing needs: those in
    force, the newest of each code version and the recent one stay, and a contract report naming an
    old one does not keep it (every night writes the month-to-date reports); a dry run names the
    same and deletes nothing."""
    settings = Settings.model_construct(lake_uri=(tmp_path / "lake").as_uri(), docs_retention_days=92)
    storage = open_storage(settings)
    _publish(storage, "p1-old", 400, "v1", {"transit": "p1-old"})
    _publish(storage, "p2-reported", 300, "v1", {"transit": "p2-reported"})
    _publish(storage, "p3-newest-of-v1", 200, "v1", {"transit": "p3-newest-of-v1"})
    _publish(storage, "p4-in-force", 150, "v2", {"transit": "p3-newest-of-v1", "parking": "p4-in-force"})
    _publish(storage, "p5-recent", 10, "v2", {"transit": "p5-recent", "parking": "p4-in-force"})
    _publish(storage, "p6-in-force", 1, "v2", {"transit": "p6-in-force", "parking": "p4-in-force"})
    storage.put_json(
        "published/CURRENT.json",
        {"groups": {"transit": {"publication_id": "p6-in-force"}, "parking": {"publication_id": "p4-in-force"}}},
    )
    storage.put_bytes("reports/contract/operator=bus/month=2026-09/p2-reported.html", b"<html>report</html>")

    assert kept_docs(storage, settings, NOW) == {
        "p3-newest-of-v1": "the newest of code version v1",
        "p4-in-force": "in force",
        "p5-recent": "younger than 92 days",
        "p6-in-force": "in force",
    }
    dry = vacuum_published(settings, storage, dry_run=True, owner="vacuum-dry", now=NOW)
    gone = sorted([docs_key("p1-old"), docs_key("p2-reported")])
    assert dry["docs_removed"] == gone
    assert storage.exists(docs_key("p1-old")) and storage.exists(docs_key("p2-reported"))

    done = vacuum_published(settings, storage, dry_run=False, owner="vacuum-1", now=NOW)
    assert done["docs_removed"] == gone
    assert not storage.exists(docs_key("p1-old")) and not storage.exists(docs_key("p2-reported"))
    for pid in ("p3-newest-of-v1", "p4-in-force", "p5-recent", "p6-in-force"):
        assert storage.exists(docs_key(pid)), pid
    assert storage.get_json("control/vacuum/vacuum-1.json")["docs_removed"] == gone
    assert vacuum_published(settings, storage, dry_run=False, owner="vacuum-2", now=NOW)["docs_removed"] == []


def test_a_comparison_report_keeps_both_publications_it_names(tmp_path) -> None:
    """A contract report of the figures recomputed now beside those published then
    (``<now>__vs__<then>.html``) keeps both publications reproducible, however old."""
    from citylake.publish.retention import kept_publications

    settings = Settings.model_construct(lake_uri=(tmp_path / "lake").as_uri(), publication_retention_days=30)
    storage = open_storage(settings)
    for pid in ("p-then", "p-now", "p-other"):
        _publish(storage, pid, 400, "v1", {"contract": pid})
    storage.put_bytes("reports/contract/operator=bus/month=2026-03/p-now__vs__p-then.html", b"<html>report</html>")
    assert kept_publications(storage, settings, NOW) == {
        "p-then": "named by a contract report",
        "p-now": "named by a contract report",
    }
