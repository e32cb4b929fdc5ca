#!/usr/bin/env python3
"""A token never reaches a log (docs/security.md, What is logged): ksockd at debug level with
every sink at once (console, file, syslog on a unix datagram socket the test binds, http to a
collector the test runs), clients presenting tokens in the query string (`?token=`, the jwt
authenticator's query source), in `Authorization: Bearer` and in the `token` op: valid ones,
refused ones (another key, expired, malformed, too long) and ones in a URL that is refused
before auth (unknown subprotocol, foreign Origin). Every sink's output is searched for each
token and for its signature part: zero hits, while each sink did record the refusals (so the
search looked at a sink that saw the events); libwebsockets' own log is on too
(KSOCK_WS_LWS_LOG, to stderr). Embedded Kafka, 127.0.0.1 only.

    test_token_logs.py KSOCKD [TEST_NAME...]
"""
import asyncio
import http.server
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt")  # may re-run this file in the venv
if HAVE:
    import jwt  # noqa: E402
    import websockets  # noqa: E402
SECRET = "token-logs-test-secret-of-32-bytes-or-more"
t = Tap()


def token(sub="alice", key=SECRET, ttl=600, **extra):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl,
              "ksock": {"publish": ["*"], "subscribe": ["*"]}, **extra}
    return jwt.encode(claims, key, algorithm="HS256")


class Collector(http.server.ThreadingHTTPServer):
    """The http sink's collector: keeps every POST body."""

    def __init__(self):
        self.bodies = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(h):
                n = int(h.headers.get("Content-Length", 0))
                self.bodies.append(h.rfile.read(n))
                h.send_response(204)
                h.end_headers()

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Syslog:
    """A syslog daemon stand-in: a unix datagram socket, read by a thread."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.grams = []
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        while True:
            try:
                self.grams.append(self.s.recv(65536))
            except OSError:
                return


async def try_connect(url, headers=None, subprotocol="ksock.v1.json", origin=None):
    """Opens and closes one connection; returns the HTTP status of a refusal, or 101."""
    kw = {"subprotocols": [subprotocol]}
    if headers:
        kw["extra_headers"] = headers
    if origin:
        kw["origin"] = origin
    try:
        async with websockets.connect(url, open_timeout=10, **kw) as ws:
            await ws.send(json.dumps({"op": "ping", "id": "p"}))
            await asyncio.wait_for(ws.recv(), 10)
            return 101
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code


async def refresh(url, good, new_tokens):
    """On a connection made with `good`, sends each of `new_tokens` with the `token` op and
    returns the answers' ops and codes."""
    got = []
    async with websockets.connect(url, subprotocols=["ksock.v1.json"], open_timeout=10,
                                  extra_headers={"Authorization": "Bearer " + good}) as ws:
        for i, tok in enumerate(new_tokens):
            await ws.send(json.dumps({"op": "token", "id": f"t{i}", "value": tok}))
            r = json.loads(await asyncio.wait_for(ws.recv(), 10))
            got.append((r["op"], r.get("error_code")))
    return got


def run(coro):
    return asyncio.new_event_loop().run_until_complete(asyncio.wait_for(coro, 60))


@t.test
def tokens_never_reach_any_log_sink():
    if not HAVE:
        t.skip("python websockets/PyJWT not available (tools/setup --test)")
    d = tempfile.mkdtemp(prefix="ksock-toklog-")
    coll = Collector()
    sysl = Syslog(os.path.join(d, "log.sock"))
    file_json, file_text = os.path.join(d, "ksockd.json.log"), os.path.join(d, "ksockd.log")
    port = free_port()
    cfg = {
        "kafka": {"bootstrap.servers": "embedded"},
        "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}],
                      "handshake_headers": ["x-ksock-token"]},
        "auth": {"plugin": "jwt", "secret": SECRET, "token_sources": ["header", "query",
                                                                       "x-ksock-token"]},
        "log": {"level": "debug", "sinks": [
            {"type": "console", "format": "text"},
            {"type": "file", "name": "json", "path": file_json, "format": "json",
             "buffer_size": 0},
            {"type": "file", "name": "text", "path": file_text, "format": "text"},
            {"type": "syslog", "socket": sysl.path, "format": "text"},
            {"type": "http", "url": f"http://127.0.0.1:{coll.server_address[1]}/ingest",
             "flush_interval": "100ms"},
        ]},
    }
    url = f"ws://127.0.0.1:{port}/"
    good_q, good_h, good_x = token("q-good"), token("h-good"), token("x-good")
    other_key = token("q-other", key="another-secret-that-is-32-bytes-long!!")
    expired = token("q-expired", ttl=-3600)
    malformed = good_q.rsplit(".", 1)[0] + ".!!!"
    huge = token("q-huge", pad="x" * 9000)  # over max_token_size (8 KiB)
    h_bad = token("h-bad", key="another-secret-that-is-32-bytes-long!!")
    no_proto, foreign = token("q-no-proto"), token("q-foreign-origin")
    refresh_ok, refresh_other = token("h-good"), token("mallory")
    refresh_bad = token("h-good", key="another-secret-that-is-32-bytes-long!!")
    canary = "canary" + str(os.getpid())
    secrets = [good_q, good_h, good_x, other_key, expired, huge, h_bad, no_proto, foreign,
               refresh_ok, refresh_other, refresh_bad]
    # libwebsockets' own log on as well (it writes to stderr, the console output searched)
    k = KsockdProc(KSOCKD, cfg, env={"KSOCK_WS_LWS_LOG": "1023"},
                   ready="listening for WebSocket clients")
    with k:
        q = lambda tok: url + "?token=" + tok  # noqa: E731
        assert run(try_connect(q(good_q))) == 101
        assert run(try_connect(q(other_key))) == 401
        assert run(try_connect(q(expired))) == 401
        assert run(try_connect(q(malformed))) == 401
        assert run(try_connect(q(huge))) in (401, 431, 400), "a 9 KiB token is refused"
        assert run(try_connect(url + "?a=1&token=" + good_q + "&b=2")) == 101
        assert run(try_connect(url, {"Authorization": "Bearer " + good_h})) == 101
        assert run(try_connect(url, {"Authorization": "Bearer " + h_bad})) == 401
        assert run(try_connect(url, {"x-ksock-token": good_x})) == 101
        # The offered subprotocol is logged with the 400: a canary showing that client-chosen
        # bytes of a handshake do reach every sink, so the search below can find them.
        assert run(try_connect(q(no_proto), subprotocol="ksock.v1." + canary)) == 400
        assert run(try_connect(q(foreign), origin="https://evil.example")) == 403
        assert run(refresh(url, good_h, [refresh_ok, refresh_other, refresh_bad])) == \
            [("token", None), ("error", -15), ("error", -15)]
        time.sleep(0.5)
    # ksockd has stopped: the file sinks are flushed and the http sink delivered its queue.
    end = time.monotonic() + 30  # the http sink's last batch (later in a sanitizer build)
    while b"ksockd stopped" not in b"".join(coll.bodies) and time.monotonic() < end:
        time.sleep(0.1)
    sysl.s.close()
    with open(file_json, "rb") as f1, open(file_text, "rb") as f2:
        outputs = {"console": k.final_log.encode(), "file json": f1.read(),
                   "file text": f2.read(), "syslog": b"\n".join(sysl.grams),
                   "http": b"".join(coll.bodies)}
    for name, out in outputs.items():
        # The sink saw the events searched for: the refusals and the refused refresh.
        assert b"ksockd stopped" in out, f"{name}: incomplete output:\n{out[-2000:]!r}"
        assert out.count(b"refused") >= 6, f"{name}: refusals not logged:\n{out[-4000:]!r}"
        assert b"new token refused" in out, name
        assert canary.encode() in out, f"{name}: the offered subprotocol is not logged"
        assert b"h-good" in out, f"{name}: no debug record of a connection (subject)"
        for tok in secrets:
            sig = tok.rsplit(".", 1)[1].encode()
            assert tok.encode() not in out, f"{name}: a whole token is logged"
            assert sig not in out, f"{name}: a token's signature is logged: {sig!r}"
            # Percent-encoding or JSON escaping cannot hide it either: JWTs are base64url.
        assert malformed.rsplit(".", 1)[0].split(".")[1].encode() not in out, name
    coll.shutdown()


t.run()
