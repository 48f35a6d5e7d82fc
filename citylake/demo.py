"""``make demo``: everything citylake can do so far, end to end, on sample data.

Each stage is a real call of the package, the same the CLI and the DAGs make. The demo works
in ``./demo`` (lake, drops) unless CITYLAKE_LAKE_URI / CITYLAKE_DROP_ROOT say otherwise, and
ends by printing where to look.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from citylake.doctor import init_lake
from citylake.settings import Settings
from citylake.storage import open_storage


def main(workdir: Path | None = None) -> int:
    workdir = (workdir or Path("demo")).resolve()
    os.environ.setdefault("CITYLAKE_LAKE_URI", (workdir / "lake").as_uri())
    os.environ.setdefault("CITYLAKE_DROP_ROOT", (workdir / "drop").as_uri())
    settings = Settings()
    print(f"== citylake demo in {workdir}")
    print("-- 1. the lake")
    for line in init_lake(settings):
        print("   " + line)
    storage = open_storage(settings)
    print("\n== where to look")
    print(f"   lake:  {storage.root_uri}")
    for info in storage.list(""):
        print(f"          {storage.url(info.key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
