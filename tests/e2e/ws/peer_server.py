#!/usr/bin/env python3
"""A Python `websockets` server for testing our client (tests/e2e/ws).

  peer_server.py PORT MODE [--tls CERT KEY]

Prints READY, then one JSON line per event on stdout:
{"ev": "connect", "t": ..., "subprotocol": ..., "path": ..., "headers": {...},
"extensions": [negotiated, e.g. "permessage-deflate"]}
{"ev": "recv", "data": ...}. Modes:
  echo        echo every message (subprotocol ksock.v1.json)
  close4401   close every connection with 4401 "token expired"
  reject403   answer the upgrade with HTTP 403
  fragment    send one fragmented text message, then echo
  big         send a 2 MiB message, then echo
  ping        ping the client every 0.2 s, echo
"""
import asyncio
import http
import json
import ssl
import sys
import time

import websockets

PORT, MODE = int(sys.argv[1]), sys.argv[2]


def out(**kw):
    kw["t"] = time.monotonic()
    print(json.dumps(kw), flush=True)


async def process_request(path, headers):
    if MODE == "reject403":
        out(ev="rejected", path=path)
        return http.HTTPStatus.FORBIDDEN, [], b"no\n"
    return None


async def handler(ws, path=None):
    out(ev="connect", subprotocol=ws.subprotocol, path=ws.path,
        headers={k.lower(): v for k, v in ws.request_headers.raw_items()},
        extensions=[e.name for e in ws.extensions])
    if MODE == "close4401":
        await ws.close(4401, "token expired")
        return
    if MODE == "fragment":
        await ws.send(["one ", "two ", "three"])
    if MODE == "big":
        await ws.send("b" * (2 * 1024 * 1024))
    try:
        async for msg in ws:
            out(ev="recv", data=msg if isinstance(msg, str) else msg.hex())
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    out(ev="closed", code=ws.close_code)


async def main():
    ctx = None
    if len(sys.argv) > 3 and sys.argv[3] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    ping = 0.2 if MODE == "ping" else None
    async with websockets.serve(handler, "127.0.0.1", PORT, subprotocols=["ksock.v1.json"],
                                process_request=process_request, ssl=ctx,
                                ping_interval=ping, ping_timeout=2 if ping else None,
                                max_size=None):
        print("READY", flush=True)
        await asyncio.Future()

asyncio.run(main())
