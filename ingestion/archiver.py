"""The city archives the public real-time feeds itself: AVL without asking the operator.

A French network must publish its real time openly (GTFS-RT or SIRI-Lite, national access point
rules: no authentication, no throttling; some use a token). Nobody keeps it: a TripUpdates feed
only says what is about to happen. The archiver polls an endpoint every ``interval_s`` seconds,
keeps each snapshot that differs from the previous one (a feed polled faster than it refreshes
serves the same bytes again), and once an hour delivers the hour's snapshots as one zip (one
member per snapshot, named by the UTC time it was fetched, to the millisecond) into the feed's drop, as an operator
would deliver a file. The night then lands it in ``raw/`` (hashed, in the manifest like any
delivery) and the feed's extract contract (``format: gtfs_rt`` or ``siri``, ``records:
passages``) derives the stop passages from the snapshots (:mod:`ingestion.standards`).

An endpoint that times out, answers an error or garbage is logged and counted, and polling goes
on: a bad minute never loses the hour. Configuration, per operator in ``operators.yaml``::

    realtime:
      avl_rt: {url: "https://…/trip-updates", interval_s: 30, timeout_s: 10,
               headers_env: {Authorization: BUS_RT_AUTH}, query_env: {apikey: BUS_RT_KEY}}

Credentials only by the names of the environment variables that hold them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from citylake.core.errors import LakeConfigError
from citylake.core.settings import Settings
from ingestion import registry
from ingestion.connectors import Drop, open_drop

log = logging.getLogger("citylake.archiver")


@dataclass
class Poll:
    at: datetime
    outcome: str  # new | same | error
    detail: str = ""
    sha256: str | None = None


@dataclass
class Archiver:
    """Polls one endpoint and delivers its snapshots hour by hour into a drop."""

    operator: str
    feed: str
    url: str
    drop: Drop
    interval_s: float = 30.0
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    polls: list[Poll] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    _hour: datetime | None = None
    _batch: list[tuple[str, bytes]] = field(default_factory=list)
    _last_sha: str | None = None

    def _fetch(self) -> bytes:
        request = urllib.request.Request(self.url, headers={"Accept-Encoding": "gzip", **self.headers})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (configured URL)
            body = response.read()
            if response.headers.get("Content-Encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            return body

    def poll_once(self) -> Poll:
        at = self.clock()
        hour = at.replace(minute=0, second=0, microsecond=0)
        if self._hour is not None and hour != self._hour:
            self.flush()
        self._hour = hour
        try:
            body = self._fetch()
        except urllib.error.HTTPError as exc:
            poll = Poll(at, "error", f"HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, TimeoutError, OSError, EOFError) as exc:
            reason = getattr(exc, "reason", exc)
            poll = Poll(at, "error", f"no answer: {reason}")
        else:
            if not body:
                poll = Poll(at, "error", "empty answer")
            else:
                sha = hashlib.sha256(body).hexdigest()
                if sha == self._last_sha:
                    poll = Poll(at, "same", "the snapshot already kept", sha)
                else:
                    self._last_sha = sha
                    name = f"{at:%Y%m%dT%H%M%S}{at.microsecond // 1000:03d}Z"
                    taken = {n for n, _ in self._batch}
                    name = next(
                        f"{name}{s}{_extension(body)}"
                        for s in ("", *range(1, 10**6))
                        if f"{name}{s}{_extension(body)}" not in taken
                    )
                    self._batch.append((name, body))
                    poll = Poll(at, "new", f"{len(body):,} bytes", sha)
        if poll.outcome == "error":
            log.warning("%s/%s %s: %s", self.operator, self.feed, self.url, poll.detail)
        self.polls.append(poll)
        return poll

    def flush(self) -> str | None:
        """Deliver the hour's snapshots (if any) as one zip into the drop; return where."""
        if not self._batch or self._hour is None:
            return None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, body in self._batch:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # deterministic bytes
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, body)
        name = f"{self.operator}_{self.feed}_{self._hour:%Y%m%dT%H}Z.zip"
        where = self.drop.write(name, buffer.getvalue())
        log.info("%s/%s: %d snapshot(s) of %s delivered to %s", self.operator, self.feed, len(self._batch), name, where)
        self.delivered.append(where)
        self._batch = []
        return where

    def run(self, polls: int | None = None, seconds: float | None = None, sleep: Callable[[float], None] = time.sleep):
        """Poll until ``polls`` polls or ``seconds`` have passed (forever if neither), then flush."""
        start, n = time.monotonic(), 0
        try:
            while (polls is None or n < polls) and (seconds is None or time.monotonic() - start < seconds):
                began = time.monotonic()
                self.poll_once()
                n += 1
                if (polls is None or n < polls) and (seconds is None or time.monotonic() - start < seconds):
                    sleep(max(0.0, self.interval_s - (time.monotonic() - began)))
        finally:
            self.flush()


def _extension(body: bytes) -> str:
    head = body.lstrip()[:1]
    return ".xml" if head == b"<" else ".json" if head in (b"{", b"[") else ".pb"


def from_config(settings: Settings, operator: str, feed: str) -> Archiver:
    """The archiver of an operator's real-time feed, as ``operators.yaml`` configures it."""
    spec = registry.operators().get(operator)
    if spec is None:
        raise LakeConfigError(f"no operator {operator!r} in {registry.config_path()}")
    rt = (spec.get("realtime") or {}).get(feed)
    if not rt or not rt.get("url"):
        raise LakeConfigError(f"operator {operator!r} has no realtime.{feed}.url in {registry.config_path()}")

    def env(name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise LakeConfigError(f"realtime {operator}/{feed}: set {name} in the environment")
        return value

    url = rt["url"]
    query = {k: env(v) for k, v in (rt.get("query_env") or {}).items()}
    if query:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
    return Archiver(
        operator,
        feed,
        url,
        open_drop(settings, spec["drop"], feed),
        interval_s=float(rt.get("interval_s", 30)),
        timeout_s=float(rt.get("timeout_s", 10)),
        headers={k: env(v) for k, v in (rt.get("headers_env") or {}).items()},
    )
