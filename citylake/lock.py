"""One nightly run at a time: a lock object in the lake, created only if absent."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from citylake.errors import CitylakeError, LakeObjectNotFound, ObjectExistsError
from citylake.storage import LakeStorage


class LockHeld(CitylakeError):
    """Another run holds the lock."""


@contextmanager
def lake_lock(storage: LakeStorage, name: str, owner: str, ttl: timedelta = timedelta(hours=6)):
    """Hold ``control/locks/<name>.json`` for the duration; an expired lock is taken over."""
    k = f"control/locks/{name}.json"
    now = datetime.now(UTC)
    body = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "acquired_at": now.isoformat(),
            "expires_at": (now + ttl).isoformat()}
    try:
        storage.put_json(k, body)
    except ObjectExistsError:
        try:
            held = storage.get_json(k)
        except LakeObjectNotFound:
            held = None
        if held and datetime.fromisoformat(held["expires_at"]) > now:
            raise LockHeld(f"another run holds {k}: {held['owner']} on {held['host']} since {held['acquired_at']}") from None
        storage.delete(k)  # expired: take it over
        storage.put_json(k, body)
    try:
        yield body
    finally:
        try:
            if storage.get_json(k).get("owner") == owner:
                storage.delete(k)
        except LakeObjectNotFound:
            pass
