"""Unpack what a delivery may wrap its payload in: gzip, zip (the archiver's hourly batches), or
nothing. Sizes are bounded like the GTFS zips (ingestion.gtfs): a small file that expands to
gigabytes is refused, never read."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable

from ingestion.parsing import MAX_TEXT_BYTES, Refused

#: What a batch may expand to: the text budget of any delivery (read at most this + 1 byte)
MAX_UNCOMPRESSED_BYTES = MAX_TEXT_BYTES
MAX_COMPRESSION_RATIO = 200


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            out = gz.read(MAX_UNCOMPRESSED_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise Refused(f"{name}: a gzip stream that cannot be read ({exc})") from None
    if len(out) > MAX_UNCOMPRESSED_BYTES:
        raise Refused(f"{name}: gzip expands past {MAX_UNCOMPRESSED_BYTES:,} bytes: zip bomb rule")
    return out


def members(data: bytes, name: str, suffixes: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """Return (member name, bytes) of every payload in a delivery, in name order.

    A zip yields its members whose names end with one of ``suffixes`` (optionally ``.gz``); a
    gzip stream yields its content; anything else is one payload named after the file."""
    if data[:2] == b"\x1f\x8b":
        return members(_gunzip(data, name), name.removesuffix(".gz"), suffixes)
    if data[:4] != b"PK\x03\x04":
        return [(name, data)]
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise Refused(f"{name}: a zip archive that cannot be read ({exc})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        total = sum(i.file_size for i in infos)
        if total > MAX_UNCOMPRESSED_BYTES or total > MAX_COMPRESSION_RATIO * max(len(data), 1):
            raise Refused(f"{name}: the archive expands to {total:,} bytes: zip bomb rule")
        out = []
        for info in sorted(infos, key=lambda i: i.filename):
            base = info.filename.removesuffix(".gz")
            if not base.lower().endswith(suffixes):
                continue
            try:
                raw = zf.read(info)
            except (zipfile.BadZipFile, OSError) as exc:
                raise Refused(f"{name}: member {info.filename} cannot be read ({exc})") from None
            payload = _gunzip(raw, f"{name}:{info.filename}") if raw[:2] == b"\x1f\x8b" else raw
            out.append((f"{name}:{info.filename}", payload))
    if not out:
        raise Refused(f"{name}: the archive holds no {' or '.join(suffixes)} file")
    return out


def xml_elements(payload: bytes, member: str, root_rule: Callable[[str | None, str], str | None]):
    """Stream an XML payload (lxml iterparse: entities and network off) and yield (event, element,
    namespace, local name) for "start" and "end"; the root must pass ``root_rule(namespace,
    local name)``, which returns why it does not (or None). A malformed document is Refused."""
    from lxml import etree

    root_seen = False
    try:
        for event, el in etree.iterparse(
            io.BytesIO(payload), events=("start", "end"), resolve_entities=False, no_network=True
        ):
            q = etree.QName(el)
            if not root_seen:
                root_seen = True
                if (why := root_rule(q.namespace, q.localname)) is not None:
                    raise Refused(f"{member}: root <{q.localname}> in namespace {q.namespace!r} {why}")
            yield event, el, q.namespace, q.localname
    except etree.XMLSyntaxError as exc:
        raise Refused(f"{member}: not well-formed XML ({exc})") from None
