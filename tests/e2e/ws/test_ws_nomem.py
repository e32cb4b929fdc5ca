#!/usr/bin/env python3
"""Out of memory in the ws transport (CONTRIBUTING.md, docs/websocket.md): an
error or a closed connection, never abort(). ws_echo_server runs with
failmalloc.so ($KSOCK_FAILMALLOC) preloaded, which makes every allocation by transport_ws.so fail
between SIGUSR1 and SIGUSR2."""
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from tap import Tap  # noqa: E402

HAVE_WS = wsutil.ensure_websockets()
SERVER = sys.argv[1]
SHIM = os.environ["KSOCK_FAILMALLOC"]
t = Tap()

if HAVE_WS:
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatusCode

SUB = ["ksock.v1.json"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def start(port):
    opts = {"listeners": [{"address": "127.0.0.1", "port": port, "path": "/ws"}]}
    if os.environ.get("KSOCK_WS_EVENT_LIB"):
        opts["event_lib"] = os.environ["KSOCK_WS_EVENT_LIB"]
    env = dict(os.environ, LD_PRELOAD=SHIM)
    return wsutil.Proc([SERVER, json.dumps(opts)], ready="READY", env=env, graceful=True)


@t.test
def upgrade_503_and_open_connection_1011_then_recovers():
    if not HAVE_WS:
        t.skip("Python websockets not installed (tools/setup --test)")
    port = wsutil.free_port()
    u = f"ws://127.0.0.1:{port}/ws"
    with start(port) as srv:
        async def go():
            a = await websockets.connect(u, subprotocols=SUB)
            await a.send("before")
            assert await a.recv() == "before"
            srv.p.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            # A handshake the transport cannot copy for the host is refused, not
            # answered as if a header were missing (the old code said 404).
            try:
                await websockets.connect(u, subprotocols=SUB)
                raise AssertionError("an upgrade succeeded with no memory")
            except InvalidStatusCode as e:
                assert e.status_code == 503, e
            # A message the transport cannot queue closes that connection only.
            await a.send("during")
            try:
                await asyncio.wait_for(a.recv(), 10)
                raise AssertionError("a message was delivered with no memory")
            except ConnectionClosed as e:
                assert e.rcvd is not None and e.rcvd.code == 1011, e
                assert e.rcvd.reason == "out of memory", e
            srv.p.send_signal(signal.SIGUSR2)
            time.sleep(0.2)
            # Memory is back: the server works, and its host heard of the close.
            async with websockets.connect(u, subprotocols=SUB) as b:
                await b.send("after")
                assert await b.recv() == "after"
                await b.send("__closes__")
                closes = json.loads(await b.recv())
            assert {"code": 1011, "reason": "out of memory", "err": None} in closes, closes
        run(go())
        assert srv.p.poll() is None, "the server died"


t.run()
