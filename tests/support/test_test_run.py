"""The test run's own machinery: built_once (a session resource built by one xdist worker and
loaded by the others) and the order the workers take the files in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest


class _Factory:
    """The part of pytest's TempPathFactory that built_once uses, for one worker of a run."""

    def __init__(self, run: Path, worker: str) -> None:
        self.base = run / f"popen-{worker}"
        self.base.mkdir(parents=True, exist_ok=True)

    def getbasetemp(self) -> Path:
        return self.base


def test_one_worker_builds_the_others_load_and_a_failed_build_is_redone(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(conftest, "_WORKER", "gw0")
    calls = []

    def failing(folder: Path) -> str:
        (folder / "half-written").write_text("x")
        calls.append("failed")
        raise RuntimeError("the build failed")

    def building(folder: Path) -> str:
        assert list(folder.iterdir()) == []  # nothing left of the failed build
        (folder / "lake").write_text("built")
        calls.append("built")
        return str(folder / "lake")

    with pytest.raises(RuntimeError, match="the build failed"):
        conftest.built_once(_Factory(tmp_path, "gw0"), "resource", failing)
    first = conftest.built_once(_Factory(tmp_path, "gw1"), "resource", building)
    second = conftest.built_once(_Factory(tmp_path, "gw0"), "resource", building)
    assert first == second == str(tmp_path / "resource" / "lake")
    assert calls == ["failed", "built"]  # built once, then loaded


def test_the_files_run_first_exist() -> None:
    """A file of LONGEST_FIRST renamed or moved would silently lose its place at the front."""
    missing = [path for path in conftest.LONGEST_FIRST if not (conftest.ROOT / path).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names files that do not exist: {missing}"
