"""The one place that builds lake keys: (zone, dataset, partitions, file) -> key.

Nobody formats lake paths by hand elsewhere. The zones, their write rules and the partition
conventions are described in ``lake_layout.md``; this module is their executable form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Zone(StrEnum):
    """Top-level prefixes of the lake, in the order data flows through them."""

    RAW = "raw"
    STAGED = "staged"
    CANDIDATE = "candidate"
    PUBLISHED = "published"
    QUARANTINE = "quarantine"
    REPORTS = "reports"
    OPENDATA = "opendata"
    CONTROL = "control"


#: Key prefixes whose objects are written once and never changed (same bytes again is a no-op).
WRITE_ONCE_PREFIXES: Mapping[str, str] = {
    "raw/": "the raw zone keeps every delivery byte for byte, forever",
    "quarantine/": "quarantined files are evidence and are kept as received",
    "published/versions/": "a publication version is frozen once promoted",
    "published/registry/": "a publication's registry record is frozen once written",
    "control/manifest/": "manifest records are append-only",
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
#: Dataset path segments may also be ids (run ids: 20261122T011457Z-75a54585).
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]*$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


#: the partition raw and quarantined deliveries are filed under (the day the city received them):
#: ingestion lands by it, the RGPD purge finds expired files by it
RECEIVED = "received_date"


def write_once_rule(key: str) -> str | None:
    """Return why ``key`` is write-once, or None when it may be replaced."""
    for prefix, rule in WRITE_ONCE_PREFIXES.items():
        if key.startswith(prefix):
            return rule
    return None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a clean relative lake key, else raise ValueError."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"invalid lake key {key!r}: must be relative and name an object")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid lake key {key!r}: empty, '.' or '..' segment")
    if any(p.startswith(".") for p in parts):
        raise ValueError(f"invalid lake key {key!r}: segments may not start with '.'")
    if Zone.__members__.get(parts[0].upper()) is None:
        raise ValueError(f"invalid lake key {key!r}: first segment must be a zone {[z.value for z in Zone]}")
    return key


def partition_value(value: str | date | datetime | int) -> str:
    """Return the canonical text of a partition value (dates ISO, no slashes)."""
    if isinstance(value, datetime):
        raise TypeError("partition by a date, not a timestamp (service_date, received_date)")
    text = value.isoformat() if isinstance(value, date) else str(value)
    if not _VALUE.match(text):
        raise ValueError(f"invalid partition value {text!r}")
    return text


def safe_filename(name: str) -> str:
    """Return a delivered file's name reduced to a safe single segment (no path, no traversal)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()  # É -> E
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", base).lstrip("._-")
    return cleaned[:180] or "unnamed"


@dataclass(frozen=True)
class LakeKey:
    """A key in the lake: ``zone/dataset/k=v/.../filename``."""

    zone: Zone
    dataset: str | None = None
    partitions: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    filename: str | None = None

    def __post_init__(self) -> None:
        if self.dataset is not None:
            for part in self.dataset.split("/"):
                if not _SEGMENT.match(part):
                    raise ValueError(f"invalid dataset name {self.dataset!r}")
        for name, value in self.partitions:
            if not _NAME.match(name):
                raise ValueError(f"invalid partition name {name!r}")
            partition_value(value)
        if self.filename is not None and not _FILENAME.match(self.filename):
            raise ValueError(f"invalid file name {self.filename!r}")

    @property
    def prefix(self) -> str:
        """Return the folder part, ending with '/'."""
        parts = [self.zone.value]
        if self.dataset:
            parts.append(self.dataset)
        parts.extend(f"{k}={v}" for k, v in self.partitions)
        return "/".join(parts) + "/"

    def __str__(self) -> str:
        if self.filename is None:
            return self.prefix
        return self.prefix + self.filename


def key(
    zone: Zone | str,
    dataset: str | None = None,
    partitions: Mapping[str, str | date | int] | None = None,
    filename: str | None = None,
) -> str:
    """Return the lake key (or prefix, when ``filename`` is None) for these parts."""
    parts = tuple((k, partition_value(v)) for k, v in (partitions or {}).items())
    return str(LakeKey(Zone(zone), dataset, parts, filename))


def parse_partitions(key_: str) -> dict[str, str]:
    """Return the hive partitions ``k=v`` found in a key, in order."""
    out: dict[str, str] = {}
    for segment in key_.split("/")[:-1]:
        if "=" in segment:
            k, v = segment.split("=", 1)
            out[k] = v
    return out
