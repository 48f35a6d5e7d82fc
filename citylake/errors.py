"""The two kinds of error citylake tells apart, and the lake's own.

*Transient* errors (network, S3 5xx, a lock held) are worth retrying; *data* errors (a bad
file, a broken contract) are never retried: the file goes to quarantine. Messages name the
object, the row and the rule wherever they are known.
"""

from __future__ import annotations


class CitylakeError(Exception):
    """Base of every error citylake raises on purpose."""


class TransientError(CitylakeError):
    """A fault that may pass: retry with backoff."""


class DataError(CitylakeError):
    """Input that breaks a rule: quarantine it, never retry."""


class LakeError(CitylakeError):
    """Something about the lake itself."""


class LakeConfigError(LakeError):
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

