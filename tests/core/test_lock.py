"""The lake's lock at the moments it changes hands: released, or just created, while another run takes it."""

from __future__ import annotations

import pytest

from citylake.core.errors import LakeObjectNotFound
from citylake.core.lock import LockHeld, lake_lock
from citylake.core.settings import Settings
from citylake.core.storage import open_storage


def test_a_lock_released_while_being_taken_is_taken(tmp_path, monkeypatch) -> None:
    """The create is refused because the lock exists, and the storage, looking at it to say so,
    finds it gone (its holder released it in between): the run takes the lock, it does not fail
    (a fresh-clone run lost a publication thread to this)."""
    storage = open_storage(Settings.model_construct(lake_uri=(tmp_path / "lake").as_uri()))
    real_put, calls = storage.put_json, []

    def released_in_between(key, body, **kw):
        calls.append(key)
        if len(calls) == 1:
            raise LakeObjectNotFound(key, storage.root_uri)
        return real_put(key, body, **kw)

    monkeypatch.setattr(storage, "put_json", released_in_between)
    with lake_lock(storage, "nightly", owner="night-b") as held:
        assert storage.get_json("control/locks/nightly.json")["owner_token"] == held["owner_token"]
    assert calls == ["control/locks/nightly.json"] * 2
    assert not storage.exists("control/locks/nightly.json")


def test_a_lock_just_created_in_this_process_is_not_taken_over(tmp_path, monkeypatch) -> None:
    """Another thread of the same process reads the lock right after its holder created it: the
    holder is alive and taking it, so the second run gets LockHeld; it never takes the lock over as
    a dead run's (a fresh-clone run had two publications at once, and a Delta commit conflict)."""
    storage = open_storage(Settings.model_construct(lake_uri=(tmp_path / "lake").as_uri()))
    real_put, second = storage.put_json, []

    def another_run_right_after(key, body, **kw):
        out = real_put(key, body, **kw)
        if body.get("owner") == "night-a":  # created, and not yet returned to its holder
            with pytest.raises(LockHeld, match="night-a"):
                with lake_lock(storage, "nightly", owner="night-b"):
                    second.append("took it")
        return out

    monkeypatch.setattr(storage, "put_json", another_run_right_after)
    with lake_lock(storage, "nightly", owner="night-a"):
        assert storage.get_json("control/locks/nightly.json")["owner"] == "night-a"
    assert second == []
    assert not storage.exists("control/locks/nightly.json")
