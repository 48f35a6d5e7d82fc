"""One nightly run at a time: a lock object in the lake, created only if absent.

A lock names its owner, host and process. It is taken over when it has expired, or at once when
its process is known dead: same host and no such process (a night killed by the OOM killer or
``kill -9`` must not block the next one for hours). A lock from another host is trusted until it
expires. A run that finds the lock held gets :class:`LockHeld`, a transient error: Airflow retries
it with backoff (it waits); ``citylake run`` exits with a clear message.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from citylake.core.errors import LakeObjectNotFound, ObjectExistsError, TransientError
from citylake.core.lake import Zone, key
from citylake.core.storage import LakeStorage


class LockHeld(TransientError):
    """Another run holds the lock (transient: worth waiting for)."""


def _dead(held: dict) -> bool:
    """True when the lock's process ran on this host and no longer exists."""
    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return held["pid"] == os.getpid() and held.get("owner_token") not in _MINE


_MINE: set[str] = set()


def _create(storage: LakeStorage, k: str, body: dict, attempts: int = 3) -> None:
    """Create the lock object only if absent. A create refused because the object exists, which
    is gone when the storage looks at it, was a holder releasing at that moment: try again."""
    for attempt in range(attempts):
        try:
            storage.put_json(k, body)
            return
        except LakeObjectNotFound:
            if attempt == attempts - 1:
                raise LockHeld(f"{k} changed hands {attempts} times while being taken") from None


@contextmanager
def lake_lock(storage: LakeStorage, name: str, owner: str, ttl: timedelta = timedelta(hours=6)):
    """Hold ``control/locks/<name>.json`` for the duration; an expired lock is taken over."""
    k = key(Zone.CONTROL, "locks", filename=f"{name}.json")
    now = datetime.now(UTC)
    token = os.urandom(8).hex()
    body = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired_at": now.isoformat(),
        "expires_at": (now + ttl).isoformat(),
        "owner_token": token,
    }
    # the token is this process's before the lock exists: another thread reading the lock in
    # between must see a live holder, never a dead run of this process (see _dead)
    _MINE.add(token)
    try:
        try:
            _create(storage, k, body)
        except ObjectExistsError:
            try:
                held = storage.get_json(k)
            except LakeObjectNotFound:
                held = None
            if held and datetime.fromisoformat(held["expires_at"]) > now and not _dead(held):
                raise LockHeld(
                    f"another run holds {k}: {held['owner']} on {held['host']} (pid {held.get('pid')}) "
                    f"since {held['acquired_at']}"
                ) from None
            storage.delete(k)  # expired, or its process is dead: take it over
            try:
                _create(storage, k, body)
            except ObjectExistsError:
                raise LockHeld(f"another run took {k} over at the same moment") from None
        yield body
    finally:
        _MINE.discard(token)
        try:
            if storage.get_json(k).get("owner_token") == token:
                storage.delete(k)
        except LakeObjectNotFound:
            pass


def renew_lock(storage: LakeStorage, name: str, held: dict, ttl: timedelta = timedelta(hours=6)) -> None:
    """Push the expiry of a lock this run holds (``held``, what :func:`lake_lock` yielded) ``ttl``
    from now: a backfill that runs for days renews it after each batch, so that no other run takes
    it over as expired. A lock taken over meanwhile raises :class:`LockHeld`."""
    k = key(Zone.CONTROL, "locks", filename=f"{name}.json")
    try:
        current = storage.get_json(k)
    except LakeObjectNotFound:
        current = {}
    if current.get("owner_token") != held["owner_token"]:
        raise LockHeld(f"{k} is no longer this run's: {current.get('owner', 'nobody')} holds it")
    held["expires_at"] = (datetime.now(UTC) + ttl).isoformat()
    storage.put_json(k, held, overwrite=True)
