"""A fault-injecting reverse proxy in front of the test S3 server (real HTTP both ways).

Faults are drawn from a seed: a transient 503 SlowDown before the request reaches S3, a 500
after S3 has applied it (the answer is lost, so the client's retry meets its own write), or a
delay. No request gets more than ``max_in_a_row`` transient faults in a row, as a real store's
outages are short. ``deny`` answers writes (or everything) with 403 AccessDenied, a permanent
error. ``strip_headers`` drops request headers on the way (``if-none-match``: a store that
ignores conditional writes). ``conflicts`` answers that many conditional puts with 409
ConditionalRequestConflict (another conditional write on the key in flight); ``lose_completes``
applies that many multipart completes and loses their answers, then answers the client's retry of
each as AWS does once the key exists (412 PreconditionFailed on If-None-Match).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter

from aiohttp import ClientSession, web

_HOP = {"host", "content-length", "transfer-encoding", "connection"}
_ERROR = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
          "{extra}</Error>")


class FaultyS3Proxy:
    def __init__(self, upstream: str, seed: int = 0, transient_rate: float = 0.0, slow_rate: float = 0.0,
                 slow_s: float = 0.3, max_in_a_row: int = 2):
        self.upstream = upstream.rstrip("/")
        self.rng = random.Random(seed)
        self.transient_rate, self.slow_rate, self.slow_s, self.max_in_a_row = transient_rate, slow_rate, slow_s, max_in_a_row
        self.deny: str | None = None  # None, "writes" or "all"
        self.strip_headers: set[str] = set()  # lower-case names
        self.conflicts = 0
        self.lose_completes = 0
        self._completed: set[str] = set()
        self.counts: Counter = Counter()
        self._in_a_row: Counter = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.url = ""

    def __enter__(self) -> FaultyS3Proxy:
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._session = ClientSession(loop=self._loop, auto_decompress=False)
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        write = request.method in ("PUT", "POST", "DELETE")
        self.counts["requests"] += 1
        if self.deny == "all" or (self.deny == "writes" and write):
            self.counts["denied"] += 1
            return _error(403, "AccessDenied", "Access Denied")
        if self.conflicts and request.method == "PUT" and "if-none-match" in {h.lower() for h in request.headers}:
            self.conflicts -= 1
            self.counts["conflict"] += 1
            return _error(409, "ConditionalRequestConflict",
                          "A conflicting operation occurred. If using PutObject you can retry the request.")
        complete = request.method == "POST" and "uploadId" in request.query
        if complete and request.path_qs in self._completed:
            self.counts["complete_retried"] += 1
            return _error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          condition="If-None-Match")
        lose_complete = self.lose_completes and complete
        key = (request.method, request.path_qs)
        fault = self.rng.random()
        transient = fault < self.transient_rate and self._in_a_row[key] < self.max_in_a_row
        self._in_a_row[key] = self._in_a_row[key] + 1 if transient else 0
        if transient and fault < self.transient_rate / 2:
            self.counts["slowdown_before"] += 1
            return _error(503, "SlowDown", "Please reduce your request rate.")
        if self.rng.random() < self.slow_rate:
            self.counts["slow"] += 1
            await asyncio.sleep(self.slow_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP | self.strip_headers}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as upstream:
            payload = await upstream.read()
            if lose_complete:
                self.lose_completes -= 1
                self._completed.add(request.path_qs)
                self.counts["lost_complete"] += 1
                return _error(500, "InternalError", "We encountered an internal error. Please try again.")
            if transient:  # applied upstream, but the answer never reaches the client
                self.counts["lost_after"] += 1
                return _error(500, "InternalError", "We encountered an internal error. Please try again.")
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            if request.method == "HEAD":  # no body, but the client reads the object's size from here
                out["Content-Length"] = upstream.headers.get("Content-Length", "0")
                return web.Response(status=upstream.status, headers=out)
            return web.Response(status=upstream.status, headers=out, body=payload)


def _error(status: int, code: str, message: str, condition: str = "") -> web.Response:
    extra = f"<Condition>{condition}</Condition>" if condition else ""
    return web.Response(status=status, body=_ERROR.format(code=code, message=message, extra=extra).encode(),
                        content_type="application/xml")
