#!/usr/bin/env python3
"""Flow control and shutdown of ksockd's bridge (docs/bridge.md, Bounds and
Shutdown), against the run's real Kafka broker (KSOCK_KAFKA_BOOTSTRAP; the
cases skip without it), with Python `websockets` clients; records are read
back with kcat.

    test_bridge_flow.py KSOCKD [TEST_NAME...]
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets")
if HAVE:
    import websockets  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
t = Tap()


def need_broker():
    if not HAVE:
        t.skip("python websockets not available (tools/setup --test)")
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset)")
    if shutil.which("kcat") is None:
        t.skip("kcat not installed")



class Ksockd(KsockdProc):
    """ksockd (auth none, loopback) on a free port; always stopped. `stats()` parses the
    counters it logs when the bridge stops."""

    def __init__(self, bridge=None, websocket=None, env=None):
        self.port = free_port()
        ws = {"listeners": [{"address": "127.0.0.1", "port": self.port}]}
        ws.update(websocket or {})
        cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
            "websocket": ws,
            "auth": {"plugin": "none"},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
        }
        if bridge is not None:
            cfg["bridge"] = bridge
        super().__init__(KSOCKD, cfg, env=env)
        self.url = f"ws://127.0.0.1:{self.port}/"


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(url, **kw):
    return websockets.connect(url, subprotocols=["ksock.v1.json"], max_size=None, **kw)


def kcat_all(topic):
    """Every record of `topic` as {value: (partition, offset)}."""
    out = subprocess.run(["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-e", "-q", "-f",
                          "%p %o %s\n"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    recs = {}
    for line in out.stdout.splitlines():
        p, o, v = line.split(" ", 2)
        assert v not in recs, f"value {v} twice in Kafka"
        recs[v] = (int(p), int(o))
    return recs


async def pipeline(url, topic, n):
    """Send n publishes without waiting while a reader collects the replies."""
    async with connect(url) as ws:
        replies = []

        async def reader():
            while len(replies) < n:
                replies.append(json.loads(await ws.recv()))

        rt = asyncio.ensure_future(reader())
        for i in range(n):
            await ws.send(json.dumps({"op": "publish", "id": str(i), "topic": topic,
                                      "value": f"v{i}"}))
        await rt
        return replies


def check_pipelined(n, max_inflight):
    need_broker()
    topic = f"br.flow.{uuid.uuid4().hex[:8]}"
    with Ksockd(bridge={"max_inflight": max_inflight}) as k:
        replies = run(pipeline(k.url, topic, n))
    errors = [r for r in replies if r["op"] != "ack"]
    assert not errors, f"{len(errors)} errors, first {errors[:3]}"
    ids = sorted(int(r["id"]) for r in replies)
    assert ids == list(range(n)), "each publish answered exactly once"
    last = {}
    for r in replies:  # acks come in the order of the delivery reports
        assert r["offset"] > last.get(r["partition"], -1), r
        last[r["partition"]] = r["offset"]
    st = k.stats()
    assert 0 < st["inflight_max"] <= max_inflight, st
    assert st["paused"] > 0, f"the bound was never reached, the test proves nothing: {st}"
    assert st["published"] == n and st["publish_errors"] == 0, st
    print(f"# inflight_max {st['inflight_max']}, paused {st['paused']} times, "
          f"send_full {st['send_full']}")


@t.test
def pipelined_10000_publishes_all_acked_within_the_bound():
    check_pipelined(10000, 100)


@t.test
def pipelined_100000_publishes_all_acked_within_the_bound():
    check_pipelined(100000, 100)


@t.test
def flood_while_the_loop_stalls_keeps_memory_bounded():
    """1 MiB frames sent while the loop sleeps (KSOCK_TEST_STALL_MS): the transport stops
    reading at receive_queue_max_bytes (4 MiB), so RSS grows by far less than the 48 MiB
    sent; every frame is answered once the loop runs again."""
    need_broker()
    n, stall_ms = 48, 4000
    with Ksockd(env={"KSOCK_TEST_STALL_MS": str(stall_ms)}) as k:
        base = k.rss_kib()

        async def go():
            async with connect(k.url) as ws:
                pad = "x" * (1024 * 1024 - 64)
                got = []

                async def reader():
                    while len(got) < n + 1:
                        got.append(json.loads(await ws.recv()))

                rt = asyncio.ensure_future(reader())
                await ws.send(json.dumps({"op": "ping", "id": "stall"}))  # the loop sleeps here

                async def flood():
                    for i in range(n):
                        await ws.send(json.dumps({"op": "ping", "id": f"{i}:{pad}"}))

                ft = asyncio.ensure_future(flood())
                await asyncio.sleep(stall_ms / 1000 * 0.75)
                peak = k.rss_kib()
                await ft
                await rt
                return peak, got

        peak, got = run(go())
    grew = (peak - base) / 1024
    print(f"# RSS {base // 1024} MiB before, {peak // 1024} MiB during the stall (+{grew:.1f})")
    assert grew < 24, f"ksockd grew by {grew:.1f} MiB while 48 MiB were sent"
    ids = [g["id"].split(":")[0] for g in got]
    assert got[0] == {"op": "pong", "id": "stall"}, got[0]
    assert ids[1:] == [str(i) for i in range(n)], "each frame answered once, in order"


@t.test
def sigterm_while_pipelining_acks_or_refuses_every_publish():
    """SIGTERM while a client pipelines: every publish is acked (and in Kafka) or refused
    with -26 (and not in Kafka); nothing is in Kafka without an ack; the connection ends
    with 1001 and ksockd exits 0."""
    need_broker()
    topic = f"br.drain.{uuid.uuid4().hex[:8]}"
    k = Ksockd(bridge={"max_inflight": 100}, websocket={"shutdown_grace": "5s"})
    with k:
        async def go():
            sent, replies, closed = [], [], []
            async with connect(k.url) as ws:
                async def reader():
                    try:
                        while True:
                            replies.append(json.loads(await ws.recv()))
                            if len(replies) == 2000:
                                k.p.send_signal(signal.SIGTERM)
                    except websockets.exceptions.ConnectionClosed as e:
                        closed.append(e)

                rt = asyncio.ensure_future(reader())
                try:
                    for i in range(30000):
                        if closed or any(r["op"] == "error" for r in replies[-50:]):
                            break  # a client stops sending once told the server shuts down
                        await ws.send(json.dumps({"op": "publish", "id": str(i), "topic": topic,
                                                  "value": f"v{i}"}))
                        sent.append(str(i))
                        await asyncio.sleep(0)  # let the reader keep up
                except websockets.exceptions.ConnectionClosed:
                    pass
                await rt
            return sent, replies, closed

        sent, replies, closed = run(go())
        k.p.wait(timeout=30)
    assert k.rc == 0, k.log()[-3000:]  # also checked on leaving `with`
    assert closed and closed[0].rcvd is not None and closed[0].rcvd.code == 1001, closed
    acked = {r["id"]: r for r in replies if r["op"] == "ack"}
    refused = {r["id"] for r in replies if r["op"] == "error"}
    for r in replies:
        assert r["op"] == "ack" or r["error_code"] == -26, r
        assert r["op"] == "ack" or r.get("topic") == topic, r
    assert len(acked) + len(refused) == len(replies), "each publish answered at most once"
    assert len(replies) == len(sent), f"{len(sent) - len(replies)} publishes never answered"
    assert refused, "no publish arrived while draining: the test proves nothing"
    in_kafka = kcat_all(topic)
    for i, a in acked.items():
        assert in_kafka.get(f"v{i}") == (a["partition"], a["offset"]), (i, a)
    for v in in_kafka:
        assert v[1:] in acked, f"{v} is in Kafka but was never acked"
    st = k.stats()
    assert st["shutdown_refused"] == len(refused), st
    print(f"# sent {len(sent)}, acked {len(acked)}, refused with -26 {len(refused)}")


t.run()
