#!/usr/bin/env python3
"""Fan-out through ksockd for profiling (docs/benchmarks.md, Admin endpoint metrics): S json
subscribers on one topic, one publisher producing M records, timed until every subscriber has
all of them. ksockd runs under an optional wrapper (callgrind, perf record) so the record path
can be profiled; auth "none" on 127.0.0.1 and the broker of KSOCK_KAFKA_BOOTSTRAP.

    bench_fanout.py KSOCKD [--subs 20] [--records 2000] [--wrap 'valgrind --tool=callgrind']
"""
import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import websockets


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def bench(url, subs, records):
    topic = f"bench.fanout.{uuid.uuid4().hex[:8]}"
    kw = {"subprotocols": ["ksock.v1.json"], "max_size": None}
    async with websockets.connect(url, **kw) as pub:
        await pub.send(json.dumps({"op": "publish", "id": "0", "topic": topic, "value": "x"}))
        assert json.loads(await pub.recv())["op"] == "ack"  # the topic exists
        clients = [await websockets.connect(url, **kw) for _ in range(subs)]
        for c in clients:
            await c.send(json.dumps({"op": "subscribe", "id": "s", "topic": topic}))
            assert json.loads(await c.recv())["op"] == "subscribed"

        async def drain(c):
            for _ in range(records):
                await c.recv()

        t0 = time.monotonic()
        readers = [asyncio.create_task(drain(c)) for c in clients]
        value = "v" * 100
        for i in range(records):
            await pub.send(json.dumps({"op": "publish", "id": str(i), "topic": topic,
                                       "value": value}))
        for _ in range(records):
            await pub.recv()
        await asyncio.gather(*readers)
        dt = time.monotonic() - t0
        for c in clients:
            await c.close()
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ksockd")
    ap.add_argument("--subs", type=int, default=20)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--wrap", default="")
    a = ap.parse_args()
    port = free_port()
    cfg = {"kafka": {"bootstrap.servers": os.environ["KSOCK_KAFKA_BOOTSTRAP"]},
           # every record fits in each queue: a slow Python reader is not closed (1013)
           "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}],
                         "send_queue_max_frames": a.records + 16,
                         "send_queue_max_bytes": (a.records + 16) * 1024},
           "auth": {"plugin": "none"}, "log": {"level": "warn"}}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(cfg, f)
        f.flush()
        p = subprocess.Popen(shlex.split(a.wrap) + [a.ksockd, "--config", f.name])
        try:
            for _ in range(600):  # a wrapped ksockd starts slowly
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            dt = asyncio.run(bench(f"ws://127.0.0.1:{port}/", a.subs, a.records))
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=120)
    n = a.subs * a.records
    print(f"{a.subs} subscribers x {a.records} records = {n} deliveries in {dt:.3f} s "
          f"({n / dt:,.0f}/s)")
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
