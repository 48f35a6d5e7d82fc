"""The browser libraries the explorer uses, fetched like any dependency (issue #34): from the npm
registry at a pinned version, checked against the pinned integrity hash (the ``sha512-…`` of
npm's lock files, Subresource Integrity), and kept beside the explorer's own files. Nothing is
fetched at run time: ``citylake serve`` serves these files from disk, and the page loads no CDN.

``make install`` runs ``citylake install-vendor``; the pin is ``explore/vendor.json``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path

from citylake.core.errors import LakeConfigError

EXPLORE = Path(__file__).parent / "explore"
PIN = json.loads((EXPLORE / "vendor.json").read_text())
VENDOR_DIR = EXPLORE / "vendor"
REGISTRY = "https://registry.npmjs.org"  # another (a mirror): citylake install-vendor --registry URL


def vendor_file(name: str) -> Path:
    """The installed file ``name`` (e.g. ``maplibre-gl.js``), or raise naming the fix."""
    path = VENDOR_DIR / f"{PIN['package']}-{PIN['version']}" / name
    if not path.is_file():
        raise LakeConfigError(f"{path} is missing: run `citylake install-vendor` (make install does)")
    return path


def integrity_of(data: bytes) -> str:
    """The Subresource Integrity string npm records for a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def install(registry: str = REGISTRY, timeout: float = 60) -> Path:
    """Fetch the pinned tarball, check its integrity, extract the files the explorer serves; return
    their folder. Does nothing when they are already there."""
    folder = VENDOR_DIR / f"{PIN['package']}-{PIN['version']}"
    names = [Path(f).name for f in PIN["files"]]
    if all((folder / n).is_file() for n in names):
        return folder
    url = f"{registry.rstrip('/')}/{PIN['package']}/-/{PIN['package']}-{PIN['version']}.tgz"
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (a pinned https URL)
        data = answer.read()
    got = integrity_of(data)
    if got != PIN["integrity"]:
        raise LakeConfigError(f"{url}: integrity {got} is not the pinned {PIN['integrity']}: refused")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in PIN["files"]:
            source = tar.extractfile(member)
            if source is None:
                raise LakeConfigError(f"{url}: {member} is not in the package")
            tmp = folder / (Path(member).name + ".part")
            tmp.write_bytes(source.read())
            os.replace(tmp, folder / Path(member).name)
    return folder
