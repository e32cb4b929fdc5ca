#!/usr/bin/env python3
"""SIGHUP reloads ksockd without dropping a connection (docs/bridge.md, Reload; docs/operations.md,
Signals): the serializer set and its options, a log sink, the auth key, the limits. A json client
subscribed to a topic keeps receiving what kcat produces across each reload; the connection count
in /metrics (the admin endpoint) is the same after as before. An invalid config changes nothing
and says why, as --check-config does. Real broker (KSOCK_KAFKA_BOOTSTRAP) and kcat for the cases
that read records; the others run on the embedded cluster.

    test_reload.py KSOCKD [TEST_NAME...]
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt", "msgpack", "prometheus_client")
if HAVE:
    import jwt  # noqa: E402
    import msgpack  # noqa: E402
    import websockets  # noqa: E402
    from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SECRET = "reload-test-secret-of-at-least-32-bytes!"
SECRET2 = "reload-test-rotated-secret-32-bytes-long!"
t = Tap()


def need_clients():
    if not HAVE:
        t.skip("python websockets/PyJWT/msgpack not available (tools/setup --test)")


def need_broker():
    need_clients()
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP): the case reads records produced by kcat")
    if shutil.which("kcat") is None:
        t.skip("kcat not installed")


def token(secret=SECRET, sub="alice"):
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600,
                       "ksock": {"publish": ["*"], "subscribe": ["*"]}}, secret, algorithm="HS256")


class Ksockd(KsockdProc):
    """ksockd on a free port whose config the test rewrites and reloads with SIGHUP."""

    def __init__(self, **over):
        self.port = free_port()
        self.admin_port = free_port()
        self.cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
            "websocket": {"listeners": [{"address": "127.0.0.1", "port": self.port}]},
            "auth": {"plugin": "jwt", "secret": SECRET},
            "serializers": {"json": {}, "msgpack": {}, "protobuf": {}},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
            "admin": {"port": self.admin_port},
        }
        self.cfg.update(over)
        super().__init__(KSOCKD, self.cfg, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def reload(self, cfg, expect="configuration reloaded"):
        """Write `cfg`, send SIGHUP, wait for the `expect` record after it."""
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        before = len(self.log())
        self.p.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        while expect not in self.log()[before:]:
            assert self.p.poll() is None, self.log()[-3000:]
            assert time.monotonic() < end, f"no {expect!r} after SIGHUP:\n{self.log()[before:]}"
            time.sleep(0.05)
        return self.log()[before:]

    def metric(self, name, **labels):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10) as r:
            body = r.read().decode()
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        raise AssertionError(f"no {name} in /metrics:\n{body}")


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(url, tok, sub="ksock.v1.json"):
    new_api = int(websockets.__version__.split(".")[0]) >= 14  # renamed extra_headers
    key = "additional_headers" if new_api else "extra_headers"
    return websockets.connect(url, subprotocols=[sub], max_size=None,
                              **{key: {"Authorization": f"Bearer {tok}"}})


async def call(ws, env):
    await ws.send(json.dumps(env))
    return json.loads(await ws.recv())


async def refused_status(url, tok, sub="ksock.v1.json"):
    try:
        async with connect(url, tok, sub):
            pass
    except Exception as e:  # noqa: BLE001 - InvalidStatus or InvalidStatusCode by version
        resp = getattr(e, "response", None)
        return resp.status_code if resp is not None else getattr(e, "status_code", None)
    return None


def kcat_produce(topic, values):
    subprocess.run(["kcat", "-b", BOOTSTRAP, "-P", "-t", topic], input="\n".join(values) + "\n",
                   text=True, check=True, timeout=30)


async def receive(ws, n):
    """The values of the next n records."""
    got = []
    while len(got) < n:
        m = json.loads(await ws.recv())
        assert m["op"] == "record", m
        got.append(m.get("value"))
    return got


async def subscribed_client(url, topic):
    """A json client subscribed at latest to an existing topic."""
    ws = await connect(url, token()).__aenter__()
    a = await call(ws, {"op": "publish", "id": "mk", "topic": topic, "value": "mk"})
    assert a["op"] == "ack", a
    s = await call(ws, {"op": "subscribe", "id": "s", "topic": topic, "start": "latest"})
    assert s["op"] == "subscribed", s
    return ws


async def msgpack_ping(url):
    async with connect(url, token(), "ksock.v1.msgpack") as ws:
        await ws.send(msgpack.packb({"op": "ping", "id": "p"}))
        return msgpack.unpackb(await ws.recv())


def sink_lines(path):
    with open(path) as f:
        return [json.loads(x)["message"] for x in f if x.strip()]


@t.test
def sighup_swaps_the_serializer_set_and_a_log_sink_while_a_client_keeps_receiving():
    """A json subscriber gets every record kcat produces before and after a SIGHUP that removes
    protobuf, changes json's options and moves the file sink: a new protobuf offer is then 400,
    a new msgpack one works, new log lines go to the new file, and no connection was dropped."""
    need_broker()
    topic = "reload-" + uuid.uuid4().hex[:8]
    with Ksockd() as k:
        log_a, log_b = os.path.join(k.dir.name, "a.log"), os.path.join(k.dir.name, "b.log")
        cfg = json.loads(json.dumps(k.cfg))
        cfg["log"]["sinks"].append({"type": "file", "path": log_a, "format": "json",
                                    "flush_interval": "10ms"})
        k.reload(cfg)  # the file sink a, so that the swap below is from one file to another

        async def go():
            ws = await subscribed_client(k.url, topic)
            kcat_produce(topic, [f"before-{i}" for i in range(5)])
            first = await receive(ws, 5)
            conns = k.metric("ksock_connections")
            cfg2 = json.loads(json.dumps(cfg))
            cfg2["serializers"] = {"json": {"json_topics": ["some.json.topic"]}, "msgpack": {}}
            cfg2["log"]["sinks"][1]["path"] = log_b
            k.reload(cfg2)
            kcat_produce(topic, [f"after-{i}" for i in range(5)])
            second = await receive(ws, 5)
            pb = await refused_status(k.url, token(), "ksock.v1.protobuf")
            pong = await msgpack_ping(k.url)
            pong_json = await call(ws, {"op": "ping", "id": "still"})
            after = k.metric("ksock_connections")
            await ws.close()
            return first, second, pb, pong, pong_json, conns, after
        first, second, pb, pong, pong_json, conns, after = run(go())
        time.sleep(0.2)  # the file sink's flush interval
        a, b = sink_lines(log_a), sink_lines(log_b)
        opened = k.metric("ksock_connections_opened_total")
        # the retired json instance's deliveries were handed to its successor when it was freed
        delivered = k.metric("ksock_records_delivered_total", serializer="json")
    assert first == [f"before-{i}" for i in range(5)], first
    assert second == [f"after-{i}" for i in range(5)], second
    assert pb == 400, pb
    assert pong["op"] == "pong" and pong["id"] == "p", pong
    assert pong_json == {"op": "pong", "id": "still"}, pong_json
    assert conns == 1 and after == 1, (conns, after)  # the json client, never dropped
    assert delivered == 10, delivered
    assert opened == 2, opened  # the json client and the msgpack one: the 400 never opened
    assert a[-1].startswith("SIGHUP: reloading"), a  # the last line before the swap
    assert "bridge reloaded" in b and "configuration reloaded" in b, b
    assert any("protobuf is not served" in m for m in b), b  # the 400, after the swap
    assert not any("protobuf is not served" in m for m in a), a
    assert "ksock.v1.json,ksock.v1.msgpack" in k.final_log, k.final_log[-2000:]


@t.test
def an_invalid_config_on_sighup_keeps_everything_and_says_why():
    """bridge.max_inflight 0 and an unknown serializer option: each SIGHUP is refused with the
    reason --check-config gives for the same file; protobuf is still served and the open
    connection still answers."""
    need_clients()
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token()) as ws:
                results = []
                for bad in ({"bridge": {"max_inflight": 0}},
                            {"serializers": {"json": {"no_such_option": 1}}}):
                    cfg = json.loads(json.dumps(k.cfg))
                    cfg.update(bad)
                    cfg["auth"] = {"plugin": "jwt", "secret": SECRET2}  # must not apply either
                    text = k.reload(cfg, expect="reload failed")
                    chk = subprocess.run([KSOCKD, "--check-config", k.config], capture_output=True,
                                         text=True, timeout=30)
                    results.append((text, chk))
                pb = await refused_status(k.url, token(), "ksock.v1.protobuf")
                old_key = await refused_status(k.url, token())
                pong = await call(ws, {"op": "ping", "id": "p"})
                return results, pb, old_key, pong, k.metric("ksock_connections")
        results, pb, old_key, pong, conns = run(go())
    for (text, chk), word in zip(results, ("max_inflight", "no_such_option")):
        assert chk.returncode == 2 and word in chk.stderr, (chk.returncode, chk.stderr)
        rec = [json.loads(x) for x in text.splitlines() if "reload failed" in x][0]
        assert word in rec["message"] and "keeping the running configuration" in rec["message"], rec
    assert pb is None, pb  # accepted: the serializer set is the old one
    assert old_key is None, old_key  # accepted: the old secret still applies
    assert pong == {"op": "pong", "id": "p"}, pong
    assert conns == 1, conns


@t.test
def a_rotated_auth_secret_applies_to_new_connections_and_the_open_one_keeps_going():
    """After a SIGHUP with a new jwt secret a new connection with an old-key token is 401, one
    with a new-key token opens, and the connection opened before still receives records."""
    need_broker()
    topic = "reload-auth-" + uuid.uuid4().hex[:8]
    with Ksockd() as k:
        async def go():
            ws = await subscribed_client(k.url, topic)
            cfg = json.loads(json.dumps(k.cfg))
            cfg["auth"]["secret"] = SECRET2
            k.reload(cfg)
            old = await refused_status(k.url, token(SECRET))
            new = await refused_status(k.url, token(SECRET2))
            kcat_produce(topic, ["x1", "x2"])
            got = await receive(ws, 2)
            conns = k.metric("ksock_connections")
            await ws.close()
            return old, new, got, conns
        old, new, got, conns = run(go())
    assert old == 401, old
    assert new is None, new
    assert got == ["x1", "x2"], got
    assert conns == 1, conns


@t.test
def a_limit_changed_by_sighup_applies_and_open_connections_stay():
    """max_connections_per_principal 1: alice's second connection is 429; after a SIGHUP that
    raises it to 2 it opens, while her first one stayed open throughout."""
    need_clients()
    with Ksockd(bridge={"max_connections_per_principal": 1}) as k:
        async def go():
            async with connect(k.url, token()) as ws:
                before = await refused_status(k.url, token())
                cfg = json.loads(json.dumps(k.cfg))
                cfg["bridge"] = {"max_connections_per_principal": 2}
                k.reload(cfg)
                async with connect(k.url, token()) as ws2:
                    pong2 = await call(ws2, {"op": "ping", "id": "2"})
                    conns = k.metric("ksock_connections")
                pong = await call(ws, {"op": "ping", "id": "1"})
                return before, pong2, pong, conns
        before, pong2, pong, conns = run(go())
    assert before == 429, before
    assert pong2["op"] == "pong" and pong["op"] == "pong", (pong2, pong)
    assert conns == 2, conns


@t.test
def a_listener_change_needs_a_restart_and_the_rest_applies():
    """A SIGHUP that moves the listener's port logs that a restart is needed and keeps serving
    on the old port; a serializer that was not served at start cannot be added by a reload."""
    need_clients()
    with Ksockd(serializers={"json": {}}) as k:
        cfg = json.loads(json.dumps(k.cfg))
        cfg["websocket"]["listeners"][0]["port"] = free_port()
        cfg["bridge"] = {"max_subscriptions": 7}
        text = k.reload(cfg)
        cfg["serializers"] = {"json": {}, "msgpack": {}}
        refused = k.reload(cfg, expect="reload failed")

        async def go():
            async with connect(k.url, token()) as ws:
                return await call(ws, {"op": "ping", "id": "p"})
        pong = run(go())
    assert "listeners changed: restart ksockd to apply" in text, text
    assert pong == {"op": "pong", "id": "p"}, pong
    assert 'msgpack\\" was not served at start' in refused, refused


t.run()
