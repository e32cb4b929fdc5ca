#!/usr/bin/env python3
"""ksockd's admin endpoint (docs/operations.md, Admin endpoint): the address it binds read
back from the kernel (`ss`), /readyz before and during a SIGTERM drain, /healthz with the
run's real broker and with a bootstrap that goes nowhere, and /metrics parsed by real parsers
(prometheus_client's, and `promtool check metrics` when Debian's prometheus is installed) with
every counter checked against what the test's own clients (Python `websockets`, PyJWT tokens)
did. Cases that need Kafka run against KSOCK_KAFKA_BOOTSTRAP and skip without it.

    test_admin.py KSOCKD [TEST_NAME...]
"""
import asyncio
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port, kernel_listening, raw_http_status  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt", "msgpack", "prometheus_client")
if HAVE:
    import jwt  # noqa: E402
    import msgpack  # noqa: E402
    import websockets  # noqa: E402
    from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SECRET = "admin-test-secret-of-at-least-32-bytes!!"
t = Tap()


def need_clients():
    if not HAVE:
        t.skip("python websockets/PyJWT/msgpack/prometheus_client not available "
               "(tools/setup --test)")


def need_broker():
    need_clients()
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset)")


class Ksockd(KsockdProc):
    """ksockd with an admin endpoint on a free port; always stopped."""

    def __init__(self, bootstrap=None, auth=None, admin=None, bridge=None, path="/"):
        self.port = free_port()
        self.admin_port = free_port()
        cfg = {
            "kafka": {"bootstrap.servers": bootstrap or BOOTSTRAP or "embedded"},
            "websocket": {"listeners": [{"address": "127.0.0.1", "port": self.port,
                                         "path": path}]},
            "auth": auth or {"plugin": "jwt", "secret": SECRET},
            "admin": dict({"port": self.admin_port}, **(admin or {})),
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
        }
        if bridge:
            cfg["bridge"] = bridge
        super().__init__(KSOCKD, cfg)
        self.url = f"ws://127.0.0.1:{self.port}/"


def get(port, path, method="GET"):
    """(status, body, headers) of one request to 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        c.close()


def token(sub="alice", publish=None, subscribe=None):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 600,
              "ksock": {"publish": publish or [], "subscribe": subscribe or []}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def connect(url, tok=None, subprotocol="ksock.v1.json"):
    headers = {"Authorization": f"Bearer {tok}"} if tok else None
    new_api = int(websockets.__version__.split(".")[0]) >= 14
    key = "additional_headers" if new_api else "extra_headers"
    kw = {key: headers}
    if subprotocol:
        kw["subprotocols"] = [subprotocol]
    return websockets.connect(url, **kw)


async def call(ws, env):
    await ws.send(json.dumps(env))
    return json.loads(await ws.recv())


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def metrics(port):
    """/metrics parsed by prometheus_client: {(name, frozenset(labels)): value}, and the text."""
    status, body, hdrs = get(port, "/metrics")
    assert status == 200, (status, body)
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4"), hdrs
    samples = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"sample {key} twice"
            samples[key] = s.value
    return samples, body


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def promtool_check(text):
    """`promtool check metrics` on the exposition, when Debian's prometheus is installed."""
    if shutil.which("promtool") is None:
        print("# promtool not installed (apt-get install prometheus): prometheus_client only")
        return
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        (r.returncode, r.stdout, r.stderr)


@t.test
def binds_loopback_exactly_ready_and_healthy():
    """No address given: 127.0.0.1 only, as the kernel shows; ready; Kafka reachable."""
    need_broker()
    if shutil.which("ss") is None:
        t.skip("ss (iproute2) not installed")
    with Ksockd() as k:
        assert kernel_listening(k.admin_port, k.p.pid) == {"127.0.0.1"}, \
            kernel_listening(k.admin_port, k.p.pid)
        assert get(k.admin_port, "/readyz")[:2] == (200, "ready\n")
        status, body, hdrs = get(k.admin_port, "/healthz")
        assert (status, body) == (200, "ok\n"), (status, body)
        assert get(k.admin_port, "/nothing")[0] == 404
        assert get(k.admin_port, "/metrics", method="POST")[0] == 405
        s, _ = metrics(k.admin_port)
        assert value(s, "ksock_kafka_reachable") == 1 and value(s, "ksock_ready") == 1, s
    assert '"admin endpoint listening"' in k.log(), k.log()


@t.test
def healthz_is_503_when_kafka_is_unreachable():
    """A bootstrap that goes nowhere (a closed local port): 503 with the reason; /readyz is about
    ksockd, not Kafka, and stays 200. Answers within health_cache reuse the probe's."""
    need_clients()
    closed = free_port()  # nothing listens there
    with Ksockd(bootstrap=f"127.0.0.1:{closed}", auth={"plugin": "none"},
                admin={"health_timeout": "500ms", "health_cache": "10s"}) as k:
        t0 = time.monotonic()
        status, body, _ = get(k.admin_port, "/healthz")
        first = time.monotonic() - t0
        assert status == 503, (status, body)
        assert body.startswith("Kafka unreachable: metadata request failed within 500 ms"), body
        assert first >= 0.4, f"answered in {first:.3f} s: no probe was made"
        t0 = time.monotonic()
        assert get(k.admin_port, "/healthz")[:2] == (503, body)
        assert time.monotonic() - t0 < 0.3, "the cached answer was not reused"
        assert get(k.admin_port, "/readyz")[0] == 200
        s, _ = metrics(k.admin_port)
        assert value(s, "ksock_kafka_reachable") == 0, s


def publish_refuse_deliver(k, topic, n, m):
    """N acked publishes, one forbidden publish, refused handshakes (bad signature, no token, no
    subprotocol), two subscribers (json and msgpack) that each receive M records. Returns the
    bytes of the record frames each subscriber received, and the metrics while they are open."""
    wrong = jwt.encode({"sub": "mallory", "exp": int(time.time()) + 60}, "x" * 40,
                       algorithm="HS256")
    good = token(publish=[topic], subscribe=[topic])

    async def refused(tok, subprotocol="ksock.v1.json"):
        try:
            async with connect(k.url, tok, subprotocol):
                pass
        except websockets.exceptions.InvalidHandshake:
            return True
        return False

    async def go():
        assert await refused(wrong) and await refused(None) and await refused(good, None)
        async with connect(k.url, good) as pub:
            for i in range(n):
                a = await call(pub, {"op": "publish", "id": f"p{i}", "topic": topic,
                                     "value": f"v{i}"})
                assert a["op"] == "ack", a
            e = await call(pub, {"op": "publish", "id": "no", "topic": topic + "-other",
                                 "value": "v"})
            assert e["op"] == "error" and e["error_code"] == -16, e
            async with connect(k.url, good) as sj, \
                    connect(k.url, good, "ksock.v1.msgpack") as sm:
                s = await call(sj, {"op": "subscribe", "id": "s", "topic": topic})
                assert s["op"] == "subscribed", s
                await sm.send(msgpack.packb({"op": "subscribe", "id": "s", "topic": topic}))
                s = msgpack.unpackb(await sm.recv())
                assert s["op"] == "subscribed", s
                for i in range(m):
                    a = await call(pub, {"op": "publish", "id": f"r{i}", "topic": topic,
                                         "value": f"record-{i}"})
                    assert a["op"] == "ack", a
                got = {"json": 0, "msgpack": 0}
                for _ in range(m):
                    f = await sj.recv()
                    assert json.loads(f)["op"] == "record", f
                    got["json"] += len(f.encode())
                    f = await sm.recv()
                    assert msgpack.unpackb(f)["op"] == "record", f
                    got["msgpack"] += len(f)
                return got, await asyncio.to_thread(metrics, k.admin_port)
    return run(go())


def raw_get(port, path, headers):
    return raw_http_status(port, [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"] + headers)


@t.test
def upgrades_the_transport_refuses_are_counted_by_status():
    """Requests refused before authentication (wrong path 404, foreign Origin 403, no served
    subprotocol 400, plain HTTP 426) are each counted once under their status, and reach
    neither the handshake count nor the auth failures."""
    need_clients()
    up = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
          "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode()]
    with Ksockd(path="/ws") as k:
        got = [raw_get(k.port, "/other", up + ["Sec-WebSocket-Protocol: ksock.v1.json"]),
               raw_get(k.port, "/ws", up + ["Sec-WebSocket-Protocol: ksock.v1.json",
                                            "Origin: https://evil.example"]),
               raw_get(k.port, "/ws", up + ["Sec-WebSocket-Protocol: ksock.v1.nope"]),
               raw_get(k.port, "/ws", [])]
        s, text = metrics(k.admin_port)
        promtool_check(text)
    assert got == [404, 403, 400, 426], got
    for status in ("400", "403", "404", "426"):
        assert value(s, "ksock_upgrades_refused_total", status=status) == 1, (status, s)
    assert value(s, "ksock_upgrades_refused_total", status="503") == 0, s
    assert value(s, "ksock_handshakes_total") == 0, s
    assert value(s, "ksock_limit_events_total", limit="connections") == 0, s


@t.test
def metrics_count_what_the_clients_did():
    """Parsed by prometheus_client (and promtool when installed); each counter equals what the
    clients here did."""
    need_broker()
    topic = f"adm.{uuid.uuid4().hex[:10]}"
    n, m = 5, 3
    with Ksockd() as k:
        got, (open_s, _) = publish_refuse_deliver(k, topic, n, m)
        time.sleep(0.5)  # the closes reach the bridge
        s, text = metrics(k.admin_port)
        promtool_check(text)
    assert value(open_s, "ksock_connections") == 3, open_s
    assert value(open_s, "ksock_subscriptions") == 2, open_s
    assert value(open_s, "ksock_kafka_readers") == 1, open_s  # one shared reader for the topic
    lags = {dict(lbl)["partition"]: v for (name, lbl), v in open_s.items()
            if name == "ksock_consumer_lag" and dict(lbl)["topic"] == topic}
    assert lags and all(v == 0 for v in lags.values()), open_s
    assert value(s, "ksock_connections") == 0 and value(s, "ksock_subscriptions") == 0, s
    assert value(s, "ksock_handshakes_total") == 6, s  # 3 refused, 3 opened
    assert value(s, "ksock_connections_opened_total") == 3, s
    assert value(s, "ksock_auth_failures_total", reason="bad_signature") == 1, s
    assert value(s, "ksock_auth_failures_total", reason="no_token") == 1, s
    assert value(s, "ksock_auth_failures_total", reason="no_subprotocol") == 1, s
    assert value(s, "ksock_publishes_acked_total") == n + m, s
    assert value(s, "ksock_publishes_refused_total", code="KSOCK_E_FORBIDDEN") == 1, s
    refused = sum(v for (name, _), v in s.items() if name == "ksock_publishes_refused_total")
    assert refused == 1, s
    for ser in ("json", "msgpack"):
        assert value(s, "ksock_records_delivered_total", serializer=ser) == m, s
        assert value(s, "ksock_delivered_bytes_total", serializer=ser) == got[ser], (s, got)
    assert value(s, "ksock_records_read_total") == m, s
    assert value(s, "ksock_slow_client_events_total", action="closed") == 0, s
    assert value(s, "ksock_queue_drops_total") == 0, s
    assert value(s, "ksock_build_info", version=value_version(s)) == 1, s


def b64(d):
    import base64
    raw = json.dumps(d).encode() if isinstance(d, dict) else d
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@t.test
def each_refused_token_is_counted_with_its_reason():
    """Tokens refused by the jwt authenticator each land in their own reason; nothing in "other",
    no publish, no connection."""
    need_clients()
    now = int(time.time())
    base = {"sub": "eve", "iss": "ksock-test", "aud": "ksockd", "iat": now, "exp": now + 600}

    def signed(claims, alg="HS256", key=SECRET, headers=None):
        return jwt.encode(claims, key, algorithm=alg, headers=headers)
    good = signed(base)
    h, c, sig = good.split(".")
    cases = {
        "alg_none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{c}.",
        "alg_refused": signed(base, alg="HS384"),
        "bad_signature": f"{h}.{b64(dict(base, sub='root'))}.{sig}",
        "malformed": "not-a-jwt",
        "expired": signed(dict(base, iat=now - 7200, exp=now - 3600)),
        "not_yet_valid": signed(dict(base, nbf=now + 3600)),
        "issuer": signed(dict(base, iss="someone-else")),
        "audience": signed(dict(base, aud="another-service")),
        "claims": signed({k: v for k, v in base.items() if k != "sub"}),
        "token_too_large": signed(dict(base, pad="x" * 9000)),
    }
    auth = {"plugin": "jwt", "secret": SECRET, "issuer": "ksock-test", "audience": "ksockd"}
    with Ksockd(auth=auth) as k:
        async def go():
            out = {}
            for reason, tok in cases.items():
                try:
                    async with connect(k.url, tok):
                        out[reason] = "accepted"
                except websockets.exceptions.InvalidHandshake as e:
                    out[reason] = getattr(getattr(e, "response", None), "status_code", None) \
                        or getattr(e, "status_code", None)
            async with connect(k.url, good) as ws:  # the control: the same config accepts it
                out["good"] = (await call(ws, {"op": "ping", "id": "x"}))["op"]
            return out
        out = run(go())
        s, text = metrics(k.admin_port)
        promtool_check(text)
    assert out.pop("good") == "pong", out
    assert all(v == 401 for v in out.values()), out
    got = {dict(lbl)["reason"]: v for (name, lbl), v in s.items()
           if name == "ksock_auth_failures_total" and v}
    assert got == {r: 1 for r in cases}, (got, k.log()[-4000:])
    assert value(s, "ksock_handshakes_total") == len(cases) + 1, s
    assert value(s, "ksock_connections_opened_total") == 1, s


def value_version(s):
    return next(dict(lbl)["version"] for (name, lbl), _ in s.items() if name == "ksock_build_info")


@t.test
def readyz_is_503_while_draining():
    """SIGTERM starts the drain: /readyz answers 503 while a client keeps it going, and ksockd
    exits 0 once the client is quiet."""
    need_clients()
    with Ksockd(auth={"plugin": "none"}, bridge={"drain_timeout": "30s"}) as k:
        assert get(k.admin_port, "/readyz")[0] == 200

        async def go():
            async with connect(k.url) as ws:
                assert (await call(ws, {"op": "ping", "id": "0"}))["op"] == "pong"
                k.p.send_signal(signal.SIGTERM)
                seen = None
                for i in range(100):  # a message every 50 ms keeps the drain from ending
                    assert (await call(ws, {"op": "ping", "id": str(i)}))["op"] == "pong"
                    r = await asyncio.to_thread(get, k.admin_port, "/readyz")
                    if r[0] == 503:
                        seen = r
                        break
                    await asyncio.sleep(0.05)
                s = await asyncio.to_thread(metrics, k.admin_port)
                return seen, s[0]
        seen, s = run(go())
        assert seen is not None and seen[1] == "draining: stopping on a signal\n", seen
        assert value(s, "ksock_draining") == 1 and value(s, "ksock_ready") == 0, s
        assert k.p.wait(timeout=30) == 0, k.log()[-3000:]


@t.test
def bad_admin_sections_are_refused():
    """Each bad "admin" section: --check-config and --config exit 2 naming the key."""
    cases = [({}, '"port"'), ({"port": 0}, '"port"'), ({"port": 70000}, '"port"'),
             ({"port": 9090, "listen": "x"}, '"listen"'), ({"port": "x"}, '"port"'),
             ({"port": 9090, "health_timeout": "1y"}, '"health_timeout"')]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.json")
        for admin, key in cases:
            with open(path, "w") as f:
                json.dump({"kafka": {"bootstrap.servers": "embedded"}, "admin": admin}, f)
            for args in (["--check-config", path], ["--config", path]):
                r = subprocess.run([KSOCKD] + args, capture_output=True, text=True, timeout=30)
                assert r.returncode == 2, (admin, args, r.returncode, r.stderr)
                assert "admin" in r.stderr and key in r.stderr, (admin, r.stderr)


@t.test
def admin_port_in_use_stops_start_up():
    """The admin address cannot be bound: start-up fails with exit 2, naming it."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.json")
            with open(path, "w") as f:
                json.dump({"kafka": {"bootstrap.servers": "embedded"},
                           "admin": {"port": port}}, f)
            r = subprocess.run([KSOCKD, "--config", path], capture_output=True, text=True,
                               timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"admin: cannot listen on 127.0.0.1 port {port}" in r.stderr, r.stderr


t.run()
