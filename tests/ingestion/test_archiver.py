"""The archiver of public real-time feeds against a local HTTP server replaying the real samples,
with an endpoint that times out, one that answers 500, and one that serves the same snapshot
twice; then the night derives stop passages from the hour's batch."""

from __future__ import annotations

import http.server
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from ingestion.archiver import Archiver, from_config
from ingestion.connectors import LocalDrop
from ingestion.standards import gtfs_rt
from tests.conftest import require_shared
from tests.support.city import ingested, onboard

TU = "realdata/standards/gtfsrt_tripupdates_edmonton_ets_2024-03-12T1837Z.pb"


def _later(data: bytes, seconds: int) -> bytes:
    """The same feed, published ``seconds`` later (a new snapshot)."""
    from google.transit import gtfs_realtime_pb2 as g

    feed = g.FeedMessage()
    feed.ParseFromString(data)
    feed.header.timestamp += seconds
    return feed.SerializeToString()


@pytest.fixture
def server() -> Iterator[str]:
    real = require_shared(TU).read_bytes()
    answers = {"/feed": [real, real, _later(real, 30)]}  # the same snapshot twice, then a new one
    seen: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            n = seen[path] = seen.get(path, -1) + 1
            if path == "/slow":
                time.sleep(1.5)
            if path == "/broken":
                self.send_response(500)
                self.end_headers()
                return
            bodies = answers.get(path, [real])
            body = bodies[min(n, len(bodies) - 1)]
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        value = self.now
        self.now += timedelta(seconds=30)
        return value


def test_polls_keep_each_new_snapshot_once_and_deliver_the_hour(server, tmp_path) -> None:
    drop = LocalDrop(tmp_path / "drop" / "edmonton" / "avl_rt")
    arch = Archiver(
        "edmonton",
        "avl_rt",
        f"{server}/feed",
        drop,
        interval_s=0,
        clock=Clock(datetime(2024, 3, 12, 18, 59, 0, tzinfo=UTC)),
    )
    arch.run(polls=3, sleep=lambda s: None)
    assert [p.outcome for p in arch.polls] == ["new", "same", "new"]
    # the polls straddle 19:00 UTC: two hourly batches, each delivered whole
    names = sorted(f.name for f in drop.list())
    assert names == ["edmonton_avl_rt_20240312T18Z.zip", "edmonton_avl_rt_20240312T19Z.zip"]
    with zipfile.ZipFile(drop.path / names[0]) as zf:
        assert zf.namelist() == ["20240312T185900000Z.pb"]
    with zipfile.ZipFile(drop.path / names[1]) as zf:
        assert zf.namelist() == ["20240312T190000000Z.pb"]
    # they read back as GTFS-RT snapshots, the second published 30 s after the first
    snaps = [s for n in names for s in gtfs_rt.snapshots((drop.path / n).read_bytes(), n)]
    assert [s.at.isoformat() for s in snaps] == ["2024-03-12T18:37:08+00:00", "2024-03-12T18:37:38+00:00"]


def test_a_timeout_or_an_error_is_counted_and_polling_goes_on(server, tmp_path) -> None:
    drop = LocalDrop(tmp_path / "drop")
    clock = Clock(datetime(2024, 3, 12, 18, 0, tzinfo=UTC))
    slow = Archiver("x", "rt", f"{server}/slow", drop, timeout_s=0.3, clock=clock)
    assert slow.poll_once().outcome == "error" and "no answer" in slow.polls[-1].detail
    broken = Archiver("x", "rt", f"{server}/broken", drop, clock=clock)
    assert broken.poll_once().outcome == "error" and broken.polls[-1].detail.startswith("HTTP 500")
    down = Archiver("x", "rt", "http://127.0.0.1:9/feed", drop, timeout_s=0.5, clock=clock)
    assert down.poll_once().outcome == "error"
    good = Archiver("x", "rt", f"{server}/feed", drop, clock=clock)
    assert good.poll_once().outcome == "new" and good.flush() is not None
    assert slow.flush() is None and broken.flush() is None  # nothing to deliver, nothing written
    assert [f.name for f in drop.list()] == ["x_rt_20240312T18Z.zip"]


def test_configured_archive_then_the_night_stages_passages(server, tmp_path, monkeypatch) -> None:
    """operators.yaml (the city's folder) names the endpoint and the credential's variable; the
    hour's batch is delivered into the feed's drop; ingestion lands it and stages its passages."""

    monkeypatch.setenv("CITYLAKE_TIMEZONE", "America/Edmonton")
    operator = (
        "  edmonton:\n    name: Edmonton Transit (public GTFS-RT)\n    drop: {type: root, path: edmonton}\n"
        f"    feeds: [avl_rt]\n    realtime:\n      avl_rt: {{url: '{server}/feed', interval_s: 0, "
        "headers_env: {X-Api-Key: EDMONTON_RT_KEY}}\n"
    )
    contract = (
        "operator: edmonton\nfeed: avl_rt\nversion: 1\ntitle: Passages from the archived GTFS-RT TripUpdates\n"
        "personal_data: false\ngroup: transit\nreference: false\n"
        "staged: {dataset: stop_visits, partition: service_date, builder: stop_visits_observed}\n"
        "file: {format: gtfs_rt, records: passages, file_name: 'edmonton_avl_rt_hour.zip', partition_from: rows}\n"
    )
    settings = onboard(tmp_path, monkeypatch, operator, {"edmonton__avl_rt.v1.yaml": contract})
    from citylake.core.errors import LakeConfigError

    with pytest.raises(LakeConfigError, match="set EDMONTON_RT_KEY"):
        from_config(settings, "edmonton", "avl_rt")
    monkeypatch.setenv("EDMONTON_RT_KEY", "not-a-real-key")
    arch = from_config(settings, "edmonton", "avl_rt")
    assert arch.headers == {"X-Api-Key": "not-a-real-key"}
    arch.run(polls=3, sleep=lambda s: None)
    assert len(arch.delivered) == 1

    staged = ingested(settings, "edmonton", "stop_visits")
    assert staged["service_date"].unique().to_list() == [date(2024, 3, 12)]
    recorded = staged.filter(pl.col("observation") == "recorded")
    # two snapshots 30 s apart: the second one's time makes a few more stops past
    assert recorded.height >= 2_314
    assert staged.filter(pl.col("observation") == "skipped")["is_valid"].sum() == 0
    from citylake.core.storage import open_storage

    assert [r.key for r in open_storage(settings).list("raw/") if "edmonton" in r.key]  # landed in raw, hashed
