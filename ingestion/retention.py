"""RGPD retention: purge the raw files of personal-data feeds once their period is over.

Feeds whose extract contract says ``personal_data: true`` (ticketing: card serials in clear)
keep their raw and quarantined files ``CITYLAKE_RAW_PERSONAL_RETENTION_DAYS`` days after receipt
(``received_date`` of the key); then this job deletes them and records every purge (key, size,
sha256, received date, reason) in ``control/manifest/purges/``. The staged rows (pseudonymised)
and the marts stay. Other feeds' raw files are kept for the contract's duration.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, date, datetime, timedelta

from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from ingestion.registry import personal_feeds

log = logging.getLogger("ingestion.retention")
_RECEIVED = re.compile(r"/received_date=(\d{4}-\d{2}-\d{2})/")


def purge_personal_raw(
    storage: LakeStorage, settings: Settings, *, today: date | None = None, dry_run: bool = False
) -> dict:
    """Delete expired raw/quarantined files of personal-data feeds; return (and store) the record."""
    today = today or datetime.now(UTC).date()
    days = settings.raw_personal_retention_days
    cutoff = today - timedelta(days=days)
    reason = f"RGPD retention: personal-data feed older than {days} days (received before {cutoff})"
    purged = []
    for operator, feed in personal_feeds():
        for zone in ("raw", "quarantine"):
            for info in storage.list(f"{zone}/operator={operator}/feed={feed}/"):
                m = _RECEIVED.search("/" + info.key)
                if not m or date.fromisoformat(m.group(1)) >= cutoff:
                    continue
                sha = info.sha256 or storage.stat(info.key).sha256  # S3 listings carry no user metadata
                entry = {"key": info.key, "size": info.size, "sha256": sha, "received_date": m.group(1)}
                if not dry_run:
                    storage.delete(info.key, purge_reason=reason)
                    log.info("purged %s (sha256 %s): %s", info.key, sha, reason)
                purged.append(entry)
    record = {
        "purge_id": f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "today": today.isoformat(),
        "retention_days": days,
        "cutoff": cutoff.isoformat(),
        "reason": reason,
        "dry_run": dry_run,
        "feeds": [f"{o}/{f}" for o, f in personal_feeds()],
        "purged": purged,
    }
    if purged and not dry_run:
        record["record_key"] = f"control/manifest/purges/{record['purge_id']}.json"
        storage.put_json(record["record_key"], record)
    log.info("retention: %d file(s) %s before %s", len(purged), "would be purged" if dry_run else "purged", cutoff)
    return record
