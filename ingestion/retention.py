"""RGPD retention: purge the raw files of personal-data feeds once their period is over.

Feeds whose extract contract says ``personal_data: true`` (ticketing: card serials in clear)
keep their raw and quarantined files ``CITYLAKE_RAW_PERSONAL_RETENTION_DAYS`` days after receipt
(``received_date`` of the key); then this job deletes them and records every purge (key, size,
sha256, received date, reason) in ``control/manifest/purges/``. The staged rows (pseudonymised)
and the marts stay. Other feeds' raw files are kept for the contract's duration.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

from citylake.core.lake import RECEIVED, Zone, key, parse_partitions
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage
from ingestion.registry import personal_feeds

log = logging.getLogger("ingestion.retention")


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
        for zone in (Zone.RAW, Zone.QUARANTINE):  # the prefixes ingestion lands under, by the one key builder
            for info in storage.list(key(zone, None, {"operator": operator, "feed": feed})):
                received = parse_partitions(info.key).get(RECEIVED)
                if received is None or date.fromisoformat(received) >= cutoff:
                    continue
                sha = info.sha256 or storage.stat(info.key).sha256  # S3 listings carry no user metadata
                entry = {"key": info.key, "size": info.size, "sha256": sha, "received_date": received}
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
        record["record_key"] = key(Zone.CONTROL, "manifest/purges", filename=f"{record['purge_id']}.json")
        storage.put_json(record["record_key"], record)
    log.info("retention: %d file(s) %s before %s", len(purged), "would be purged" if dry_run else "purged", cutoff)
    return record


#: A value quoted in a message that holds a run of 8 or more digits: in a personal-data feed's
#: records, a card number written by the code before messages withheld values (issue #29).
_QUOTED_NUMBER = r"'[^'\n]*\d{8,}[^'\n]*'"


def scrub_personal_messages(storage: LakeStorage, *, dry_run: bool = False) -> dict:
    """RGPD remediation for lakes written before messages withheld values: rewrite the manifest
    objects (steps' detail, invalid reasons, and their snapshots) and the staged partitions
    (``invalid_reason``) of personal-data feeds where a quoted value holds a card-like number,
    the value replaced by ``ingestion.masking.WITHHELD``. Every rewritten object is recorded
    (key, sha256 before and after) in ``control/manifest/purges/``."""
    import io
    import tempfile
    from pathlib import Path

    import polars as pl

    from citylake.core.lake import write_once_rule
    from citylake.core.storage import sha256_bytes
    from ingestion import manifest
    from ingestion.masking import WITHHELD

    feeds = personal_feeds()
    operators = sorted({o for o, _ in feeds})
    pairs = pl.DataFrame(
        {"operator": [o for o, _ in feeds], "feed": [f for _, f in feeds]},
        schema={
            "operator": pl.Utf8,
            "feed": pl.Utf8,
        },
    )
    text_columns = {"steps": "detail", "invalid_reasons": "reason"}
    purge_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    reason = "RGPD remediation: card numbers quoted in messages of personal-data feeds, withheld"
    keys: list[tuple[str, str]] = []
    for table, column in text_columns.items():  # every object, and the snapshot that folds them
        keys += [(i.key, column) for i in storage.list(key(Zone.CONTROL, f"manifest/{table}"))]
        if storage.exists(manifest.snapshot_key(table)):
            keys.append((manifest.snapshot_key(table), column))
    from ingestion.contracts import all_contracts

    datasets = sorted({c.staged["dataset"] for c in all_contracts() if c.personal_data})
    for dataset in datasets:
        keys += [
            (i.key, "invalid_reason") for i in storage.list(key(Zone.STAGED, dataset)) if i.key.endswith(".parquet")
        ]
    rewritten = []
    for k, column in keys:
        if not k.endswith(".parquet"):
            continue
        data = storage.get_bytes(k)
        frame = pl.read_parquet(io.BytesIO(data))
        if column not in frame.columns:
            continue
        mine = pl.lit(True)
        if "feed" in frame.columns and k.startswith(key(Zone.CONTROL)):
            mine = pl.struct("operator", "feed").is_in(pairs.to_struct().implode())
        elif k.startswith(key(Zone.STAGED)) and "operator" in frame.columns:
            mine = pl.col("operator").is_in(operators)
        hit = mine & pl.col(column).str.contains(_QUOTED_NUMBER).fill_null(False)
        if not frame.select(hit.any()).item():
            continue
        fixed = frame.with_columns(
            pl.when(hit).then(pl.col(column).str.replace_all(_QUOTED_NUMBER, f"'{WITHHELD}'")).otherwise(pl.col(column))
        )
        entry = {"key": k, "sha256_before": sha256_bytes(data), "rows": int(frame.select(hit.sum()).item())}
        if not dry_run:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "scrubbed.parquet"
                fixed.write_parquet(path, compression="zstd")
                if write_once_rule(k):
                    # a write-once record changes only by purge: the scrubbed copy is put aside first
                    # (a crash between the delete and the put leaves it there, named in the log)
                    aside = key(Zone.CONTROL, f"scrub/{purge_id}") + k
                    storage.put_file(aside, path, overwrite=True)
                    log.info("scrub: %s set aside as %s", k, aside)
                    storage.delete(k, purge_reason=reason)
                    entry["sha256_after"] = storage.put_file(k, path).sha256
                    storage.delete(aside, purge_reason=reason)
                else:
                    entry["sha256_after"] = storage.put_file(k, path, overwrite=True).sha256
        rewritten.append(entry)
    record = {"purge_id": purge_id, "reason": reason, "dry_run": dry_run, "rewritten": rewritten}
    if rewritten and not dry_run:
        record["record_key"] = key(Zone.CONTROL, "manifest/purges", filename=f"{record['purge_id']}.json")
        storage.put_json(record["record_key"], record)
    log.info("scrub: %d object(s) %s", len(rewritten), "to rewrite" if dry_run else "rewritten")
    return record
