"""The kinds of error citylake tells apart, kept typed up to the edge (CLI, Airflow task).

* *Transient* errors (network, S3 5xx, a lock held) are worth retrying, with backoff;
* *data* errors (a bad file, a broken rule) are never retried: the file goes to quarantine;
* *configuration* errors (a missing setting or credential, a bad ``operators.yaml``) stop at
  once, with a message that says what to fix: retrying would fail the same way;
* :class:`PublicationRefused`: blocking checks failed; the groups concerned keep their last
  good publication, and the night says why.

Messages name the object, the row and the rule wherever they are known.
"""

from __future__ import annotations


class CitylakeError(Exception):
    """Base of every error citylake raises on purpose."""


class TransientError(CitylakeError):
    """A fault that may pass: retry with backoff."""


class DataError(CitylakeError):
    """Input that breaks a rule: quarantine it, never retry."""


class ConfigError(CitylakeError):
    """citylake is configured wrongly: stop now and say what to fix (never retried)."""


class PublicationRefused(CitylakeError):
    """Blocking checks failed: the groups concerned keep their last good publication."""

    def __init__(self, refused: dict[str, list[str]], published: list[str] | None = None) -> None:
        lines = [
            f"{g}: " + "; ".join(reasons[:3]) + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")
            for g, reasons in refused.items()
        ]
        super().__init__(
            f"publication refused for group(s) {', '.join(refused)} "
            f"(published: {', '.join(published or []) or 'none'}): " + " | ".join(lines)
        )
        self.refused = refused
        self.published = list(published or [])


class LakeError(CitylakeError):
    """Something about the lake itself."""


class LakeConfigError(LakeError, ConfigError):
    """The lake cannot be reached as configured (bad URI, missing credentials, missing bucket)."""


class LakeObjectNotFound(LakeError, FileNotFoundError):
    """The key does not exist in the lake."""

    def __init__(self, key: str, root: str) -> None:
        super().__init__(f"no object {key!r} in lake {root}")
        self.key = key


class ImmutableObjectError(LakeError):
    """A write-once key was asked to change."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(
            f"refusing to overwrite {key!r}: {rule}. Write-once objects never change; "
            "write a new key (a corrected delivery supersedes, it does not replace)."
        )
        self.key = key


class ObjectExistsError(LakeError):
    """A key exists and the write did not ask to overwrite it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key!r} already exists; pass overwrite=True to replace it")
        self.key = key


class TransientLakeError(LakeError, TransientError):
    """The lake did not answer (network, 5xx, throttling): retry."""
