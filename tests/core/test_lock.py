"""The lake's lock: a holder releasing at the very moment another run takes it."""

from __future__ import annotations

from citylake.core.errors import LakeObjectNotFound
from citylake.core.lock import lake_lock
from citylake.core.storage import open_storage


def test_a_lock_released_while_being_taken_is_taken(tmp_path, monkeypatch) -> None:
    """The create is refused because the lock exists, and the storage, looking at it to say so,
    finds it gone (its holder released it in between): the run takes the lock, it does not fail
    (a fresh-clone run lost a publication thread to this)."""
    from citylake.core.settings import Settings

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
