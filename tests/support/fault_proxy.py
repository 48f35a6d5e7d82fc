"""An HTTP proxy in front of the S3 test server that injects faults on a schedule.

Each request is forwarded to the upstream (moto) unless the proxy's ``fault`` function, given the
method, path and how many times this method+path was seen, returns one of:

* ``"503"``: answer ``503 SlowDown`` (an S3 error body) without forwarding;
* ``"slow"``: forward, then wait ``delay`` seconds before answering;
* ``"reset"``: close the connection without answering (the server died mid-request);
* ``"cut"``: read half of the request body, then close (an upload cut in the middle).

``down`` set to True refuses every request by closing the connection (server stopped).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultProxy:
    def __init__(self, upstream: str, fault: Callable[[str, str, int], str | None] | None = None, delay: float = 0.5):
        self.upstream = urlparse(upstream)
        self.fault = fault or (lambda method, path, seen: None)
        self.delay = delay
        self.down = False
        self.seen: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                path = self.path.split("?", 1)[0]
                proxy.seen[(self.command, path)] += 1
                n = proxy.seen[(self.command, path)]
                length = int(self.headers.get("Content-Length") or 0)
                if proxy.down:
                    proxy.injected["down"] += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                action = proxy.fault(self.command, path, n)
                if action == "cut":
                    self.rfile.read(length // 2)
                    proxy.injected["cut"] += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                body = self.rfile.read(length) if length else b""
                if action == "reset":
                    proxy.injected["reset"] += 1
                    self.close_connection = True
                    self.connection.close()
                    return
                if action == "503":
                    proxy.injected["503"] += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                proxy.forwarded += 1
                if action == "slow":
                    proxy.injected["slow"] += 1
                    time.sleep(proxy.delay)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
