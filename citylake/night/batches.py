"""Batches of service dates for a backfill or a rebuild, sized by what they hold (issue #32).

A range of dates built in one dbt run costs memory in proportion to the rows it holds: 185 small
days took 7.8 GiB, and one metro day is about 75 small days. So a long range is cut, in date
order, into batches whose staged rows fit a memory budget; each batch is built on its own (the
incremental models add its dates, as the nights would one by one), audited and committed to the
Delta tables by the gate, which publishes once, after the last batch, so consumers never see a
half-loaded history (``citylake.publish.gate.run_gate`` with a stage).

The state of a running backfill or rebuild is kept in the lake (:data:`STATE`): the batches
planned, those built and committed, and what they committed not yet published (``stage``). A run
killed at any point resumes from the first batch not recorded (``citylake backfill --resume``,
``citylake rebuild --resume``); a batch is recorded only after its commit, and building and
committing a batch again is harmless (delete+insert by date, partitions replaced by date).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from citylake.core.errors import ConfigError
from citylake.core.lake import Zone, key
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage

#: What a dbt build costs per staged row, and what it costs before its first row, on this
#: machine: one day at a quarter of metro scale (575,000 staged rows) peaked at 1.36 GB and a
#: metro day (2.3 M) at 3.7 GiB (BENCHMARKS.md, issue #32). The larger per-row figure is taken.
BYTES_PER_ROW = 2_400
FIXED_BYTES = 512 * 1024**2

#: The running (or last) backfill or rebuild: its batches and those built.
STATE = key(Zone.CONTROL, "batches", filename="state.json")

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from a size as people write it: ``6GiB``, ``500MB``, ``8GB``, ``1073741824``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text or "", re.IGNORECASE)
    if not m:
        raise ConfigError(f"CITYLAKE_BATCH_MEMORY={text!r}: not a size (write it as 6GiB, 500MB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


def memory_budget(settings: Settings) -> int:
    """The memory one batch may take: ``CITYLAKE_BATCH_MEMORY``, else a quarter of the machine's."""
    if settings.batch_memory:
        return parse_size(settings.batch_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def rows_per_batch(budget_bytes: int) -> int:
    """The staged rows a batch may hold under a memory budget (at least one)."""
    return max(1, (budget_bytes - FIXED_BYTES) // BYTES_PER_ROW)


def plan_batches(dates: Iterable[date], rows: Mapping[date, int], max_rows: int) -> list[list[date]]:
    """Cut the dates, in order, into runs of consecutive dates holding at most ``max_rows`` staged
    rows each; a date that alone holds more is a batch of its own (a day is never split).

    Greedy: each batch takes dates until the next would pass the bound, which for dates in order
    gives the fewest batches."""
    batches: list[list[date]] = []
    current: list[date] = []
    held = 0
    for d in sorted(set(dates)):
        n = max(0, rows.get(d, 0))
        if current and held + n > max_rows:
            batches.append(current)
            current, held = [], 0
        current.append(d)
        held += n
    if current:
        batches.append(current)
    return batches


def staged_rows(storage: LakeStorage, dates: Sequence[date] | None = None) -> dict[date, int]:
    """Rows staged per service date, every dataset together, from the manifest."""
    import polars as pl

    from ingestion import manifest

    steps = manifest.load(storage, "steps")
    staged = steps.filter((pl.col("step") == "staged") & pl.col("partition_date").is_not_null())
    if dates is not None:
        staged = staged.filter(pl.col("partition_date").is_in(list(dates)))
    per_date = staged.group_by("partition_date").agg(pl.col("rows_total").fill_null(0).sum())
    return dict(zip(per_date["partition_date"].to_list(), per_date["rows_total"].to_list(), strict=True))


def new_state(
    kind: str, first: date, last: date, batches: list[list[str]], *, run_id: str, **extra: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "run_id": run_id,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "started_at": datetime.now(UTC).isoformat(),
        "batches": [list(b) for b in batches],  # ISO dates
        "built": [],
        "finished": False,
        **extra,
    }


def read_state(storage: LakeStorage) -> dict[str, Any] | None:
    return storage.get_json(STATE) if storage.exists(STATE) else None


def write_state(storage: LakeStorage, state: dict[str, Any]) -> None:
    storage.put_json(STATE, state, overwrite=True)


def unfinished(storage: LakeStorage, kind: str) -> dict[str, Any]:
    """The interrupted backfill or rebuild to resume, or a ConfigError saying there is none."""
    state = read_state(storage)
    if not state or state.get("finished"):
        raise ConfigError(f"nothing to resume: no {kind} was interrupted ({STATE} says none is running)")
    if state["kind"] != kind:
        raise ConfigError(
            f"the interrupted run is a {state['kind']} from {state['first']} to {state['last']}: "
            f"resume it with `citylake {state['kind']} --resume`"
        )
    return state


def refuse_if_interrupted(storage: LakeStorage) -> None:
    """A new backfill or rebuild may not start over an interrupted one: its batches built but not
    published would be published with the new run's, under another run's name."""
    state = read_state(storage)
    if state and not state.get("finished"):
        raise ConfigError(
            f"a {state['kind']} from {state['first']} to {state['last']} was interrupted "
            f"({len(state['built'])} of {len(state['batches'])} batches built, {STATE}): "
            f"finish it first with `citylake {state['kind']} --resume`"
        )
