#!/usr/bin/env python3
"""WebSocket transport benchmark (docs/websocket.md).

  bench_ws.py SERVER_BIN [--idle N] [--seconds S] [--conns C] [--size BYTES]
              [--options JSON] [--echo-with-idle]

SERVER_BIN is build/tests/e2e/ws/ws_echo_server (the transport_ws plugin behind
a trivial echo host; KSOCK_PLUGIN_PATH must point at build/plugins), or
"node:PORT:PID" for an already running server (e.g. a Node `ws` echo server) so
the same client measures both.

1. Echo: C concurrent raw-socket clients (one per thread... no: one asyncio
   task each over raw sockets, so the client is cheap) send a 32-byte (or
   --size) text message and wait for its echo, for S seconds: round trips/s, p50, p99.
2. Idle memory: open N upgraded connections that then stay silent; the
   server's RSS delta divided by N.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upgrade_request(path="/ws"):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def text_frame(payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_message(r):
    """One unmasked server message (fragments joined); returns its length."""
    total = 0
    while True:
        hdr = await r.readexactly(2)
        n = hdr[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await r.readexactly(8))[0]
        await r.readexactly(n)
        total += n
        if hdr[0] & 0x80:
            return total


async def echo_client(port, deadline, lat, size):
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    w.write(upgrade_request())
    await r.readuntil(b"\r\n\r\n")
    frame = text_frame(b"x" * size)
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        w.write(frame)
        got = await read_message(r)
        assert got == size, (got, size)
        lat.append(time.perf_counter() - t0)
    w.close()


async def echo_bench(port, conns, seconds, size=32):
    lat = []
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(echo_client(port, deadline, lat, size) for _ in range(conns)))
    lat.sort()
    return {"round_trips_per_s": round(len(lat) / seconds),
            "p50_us": round(lat[len(lat) // 2] * 1e6),
            "p99_us": round(lat[int(len(lat) * 0.99)] * 1e6)}


def idle_bench(pid, port, n, keep=False):
    socks = []
    time.sleep(0.5)
    before = rss_kib(pid)
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(upgrade_request())
        socks.append(s)
        if i % 500 == 499:  # read the 101s in batches
            for t in socks[-500:]:
                t.recv(4096)
    for t in socks[-(n % 500 or 500):]:
        t.settimeout(5)
        try:
            t.recv(4096)
        except OSError:
            pass
    time.sleep(1.0)
    after = rss_kib(pid)
    if keep:
        return socks, {"connections": n, "rss_before_kib": before, "rss_after_kib": after,
                       "bytes_per_idle_connection": round((after - before) * 1024 / n)}
    for s in socks:
        s.close()
    return {"connections": n, "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_idle_connection": round((after - before) * 1024 / n)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--size", type=int, default=32, help="echo message size in bytes")
    ap.add_argument("--options", default="{}", help="extra transport options (JSON)")
    ap.add_argument("--echo-with-idle", action="store_true",
                    help="open the N idle connections first and run the echo test while they "
                         "stay open (what a poll() loop pays per wake-up)")
    a = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (a.idle + 1024, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))
    proc = None
    if a.server.startswith("node:"):
        port, pid = int(a.server.split(":")[1]), int(a.server.split(":")[2])
    else:
        port = free_port()
        opts = {"listeners": [{"address": "127.0.0.1", "port": port, "path": "/ws"}]}
        opts.update(json.loads(a.options))
        proc = subprocess.Popen([a.server, json.dumps(opts)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert "READY" in proc.stdout.readline()
        pid = proc.pid
    try:
        if a.echo_with_idle and a.idle:
            socks, idle = idle_bench(pid, port, a.idle, keep=True)
            res = {"idle": idle,
                   "echo_with_idle": asyncio.run(echo_bench(port, a.conns, a.seconds, a.size))}
            for s in socks:
                s.close()
            print(json.dumps(res, indent=2))
            return
        res = {"echo": asyncio.run(echo_bench(port, a.conns, a.seconds, a.size))}
        if a.idle:
            res["idle"] = idle_bench(pid, port, a.idle)
        print(json.dumps(res, indent=2))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
