#!/usr/bin/env python3
"""Server memory per connection with and without permessage-deflate (docs/websocket.md).

  KSOCK_PLUGIN_PATH=BUILD/plugins bench_ws_deflate_mem.py BUILD/tests/e2e/ws/ws_echo_server [N]

Opens N (default 1000) Python `websockets` connections to ws_echo_server, with
the server's permessage_deflate off and on, and prints the server's RSS delta
per connection while they are idle and after each has exchanged one 300-byte
message (zlib state is set up on first use). Needs the test venv's python
(tools/setup --test) for `websockets`.
"""
import asyncio
import json
import os
import subprocess
import sys
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ws import free_port, rss_kib  # noqa: E402


async def measure(server, deflate, n, talk):
    port = free_port()
    opts = {"listeners": [{"address": "127.0.0.1", "port": port, "path": "/ws"}],
            "permessage_deflate": deflate}
    p = subprocess.Popen([server, json.dumps(opts)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        assert "READY" in p.stdout.readline()
        time.sleep(0.3)
        before = rss_kib(p.pid)
        conns = [await websockets.connect(f"ws://127.0.0.1:{port}/ws",
                                          compression="deflate" if deflate else None)
                 for _ in range(n)]
        if talk:
            for c in conns:
                await c.send("hello " * 50)
                await c.recv()
        await asyncio.sleep(0.5)
        after = rss_kib(p.pid)
        for c in conns:
            await c.close()
        return round((after - before) * 1024 / n)
    finally:
        p.terminate()
        p.wait(timeout=20)


async def main():
    server = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    for deflate in (False, True):
        for talk in (False, True):
            b = await measure(server, deflate, n, talk)
            print(f"permessage_deflate={str(deflate).lower():5} after_a_message={str(talk).lower():5}"
                  f" {b} B per connection ({n} connections)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
