#!/usr/bin/env python3
"""SIGHUP reloads ksockd without dropping a connection (docs/bridge.md, Reload; docs/operations.md,
Signals): the serializer set and its options, a log sink, the auth key, the limits. A json client
subscribed to a topic keeps receiving what kcat produces across each reload, also one that moves
its listener; the connection count
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
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port, kernel_listening, metric  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt", "msgpack", "prometheus_client")
if HAVE:
    import jwt  # noqa: E402
    import msgpack  # noqa: E402
    import websockets  # noqa: E402
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
        return metric(self.admin_port, name, **labels)


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


def need_ss():
    if shutil.which("ss") is None:
        t.skip("ss (iproute2) not installed")


async def connect_refused(url):
    """True when nothing accepts a TCP connection at url any more (ECONNREFUSED)."""
    try:
        async with connect(url, token()):
            return False
    except ConnectionRefusedError:
        return True


@t.test
def sighup_moves_a_listener_and_its_clients_keep_going():
    """A SIGHUP that replaces listener A by listener B (another port, another path): A's port
    closes in the kernel's socket table and refuses connections, B accepts at its path only, and
    the client that came in through A keeps receiving what kcat produces and keeps publishing.
    A later SIGHUP that lists A again reopens it; B, listed in both, keeps its socket."""
    need_broker()
    need_ss()
    topic = "reload-listen-" + uuid.uuid4().hex[:8]
    with Ksockd() as k:
        port_a, port_b = k.port, free_port()
        url_b = f"ws://127.0.0.1:{port_b}/b"

        async def go():
            ws = await subscribed_client(k.url, topic)
            kcat_produce(topic, ["before"])
            first = await receive(ws, 1)
            cfg = json.loads(json.dumps(k.cfg))
            cfg["websocket"]["listeners"] = [{"address": "127.0.0.1", "port": port_b,
                                              "path": "/b"}]
            text = k.reload(cfg)
            kernel = (kernel_listening(port_a, k.p.pid), kernel_listening(port_b, k.p.pid))
            refused_a = await connect_refused(k.url)
            wrong_path = await refused_status(f"ws://127.0.0.1:{port_b}/", token())
            async with connect(url_b, token()) as ws_b:
                pong_b = await call(ws_b, {"op": "ping", "id": "b"})
                conns = k.metric("ksock_connections")
            kcat_produce(topic, ["after"])
            second = await receive(ws, 1)
            await ws.send(json.dumps({"op": "publish", "id": "p", "topic": topic, "value": "x"}))
            ack = {}
            while ack.get("id") != "p":  # its own record may come first: it is subscribed
                ack = json.loads(await ws.recv())
            cfg["websocket"]["listeners"].append({"address": "127.0.0.1", "port": port_a})
            text2 = k.reload(cfg)
            async with connect(k.url, token()) as ws_a2:
                pong_a2 = await call(ws_a2, {"op": "ping", "id": "a2"})
            await ws.close()
            return (first, text, kernel, refused_a, wrong_path, pong_b, conns, second, ack, text2,
                    pong_a2)
        (first, text, kernel, refused_a, wrong_path, pong_b, conns, second, ack, text2,
         pong_a2) = run(go())
    assert first == ["before"] and second == ["after"], (first, second)
    assert kernel == (set(), {"127.0.0.1"}), kernel
    assert f"stopped listening on ws://127.0.0.1:{port_a}/" in text, text
    assert f"listening on ws://127.0.0.1:{port_b}/b" in text, text
    assert "listeners applied" in text and "configuration reloaded" in text, text
    assert refused_a, "a connection to the removed listener was accepted"
    assert wrong_path == 404, wrong_path
    assert pong_b == {"op": "pong", "id": "b"}, pong_b
    assert conns == 2, conns  # the client of the removed listener and the new one
    assert ack["op"] == "ack", ack
    assert pong_a2 == {"op": "pong", "id": "a2"}, pong_a2
    assert f"listening on ws://127.0.0.1:{port_a}/" in text2, text2
    assert f"ws://127.0.0.1:{port_b}" not in text2, text2  # kept, not rebound


def in_own_netns(name):
    """Run test `name` again in a network namespace of its own (only loopback, brought up), so
    that a listener on 0.0.0.0 binds nothing but loopback. True inside it; outside it runs the
    child, turns its TAP line into this test's result, and returns False."""
    if os.environ.get("KSOCK_TEST_NETNS") == name:
        return True
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        t.skip("unshare or ip (util-linux, iproute2) not installed")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        t.skip("cannot make a network namespace here: " + probe.stderr.strip())
    env = dict(os.environ, KSOCK_TEST_NETNS=name)
    env.pop("KSOCK_KAFKA_BOOTSTRAP", None)  # the broker is outside: the embedded cluster serves
    r = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                        sys.executable, os.path.abspath(__file__), KSOCKD, name],
                       env=env, capture_output=True, text=True, timeout=180)
    if "# SKIP" in r.stdout:
        t.skip(r.stdout.split("# SKIP", 1)[1].strip())
    assert r.returncode == 0 and f"ok 1 - {name}" in r.stdout, r.stdout + r.stderr
    return False


@t.test
def a_listener_on_every_address_narrowed_to_loopback_on_the_same_port():
    """In a network namespace of its own: a SIGHUP replacing 0.0.0.0:P by 127.0.0.1:P (a bind
    the old socket blocks until it is closed) leaves only 127.0.0.1:P in the kernel's socket
    table; the client connected before keeps answering and new clients connect."""
    need_clients()
    need_ss()
    if not in_own_netns("a_listener_on_every_address_narrowed_to_loopback_on_the_same_port"):
        return
    with Ksockd() as k:
        cfg = json.loads(json.dumps(k.cfg))
        cfg["websocket"]["listeners"] = [{"address": "0.0.0.0", "port": k.port}]
        k.reload(cfg)  # from 127.0.0.1 to every address: a plain move, bound before the close
        wide = kernel_listening(k.port, k.p.pid)

        async def go():
            async with connect(k.url, token()) as ws:
                cfg["websocket"]["listeners"][0]["address"] = "127.0.0.1"
                text = k.reload(cfg)
                narrow = kernel_listening(k.port, k.p.pid)
                async with connect(k.url, token()) as ws2:
                    pong2 = await call(ws2, {"op": "ping", "id": "2"})
                pong = await call(ws, {"op": "ping", "id": "1"})
                return text, narrow, pong, pong2
        text, narrow, pong, pong2 = run(go())
    assert wide == {"0.0.0.0"}, wide
    assert narrow == {"127.0.0.1"}, narrow
    assert f"stopped listening on ws://0.0.0.0:{k.port}/" in text, text
    assert f"listening on ws://127.0.0.1:{k.port}/" in text, text
    assert pong == {"op": "pong", "id": "1"} and pong2 == {"op": "pong", "id": "2"}, (pong, pong2)


@t.test
def a_listener_that_cannot_bind_fails_the_whole_reload():
    """A SIGHUP adding a listener on a port another socket holds is refused naming the listener
    and the errno; nothing of that reload applies (its new limit neither), the running listener
    still serves, and the port the refused reload also listed stays unbound."""
    need_clients()
    need_ss()
    with Ksockd() as k, socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy, spare = held.getsockname()[1], free_port()
        cfg = json.loads(json.dumps(k.cfg))
        cfg["websocket"]["listeners"] += [{"address": "127.0.0.1", "port": spare},
                                          {"address": "127.0.0.1", "port": busy}]
        cfg["bridge"] = {"max_connections_per_principal": 1}
        text = k.reload(cfg, expect="reload failed")
        spare_bound = kernel_listening(spare, k.p.pid)

        async def go():
            async with connect(k.url, token()) as ws, connect(k.url, token()) as ws2:
                return (await call(ws, {"op": "ping", "id": "1"}),
                        await call(ws2, {"op": "ping", "id": "2"}))
        pongs = run(go())
    rec = [json.loads(x) for x in text.splitlines() if "reload failed" in x][0]
    assert f'listeners[2] ("127.0.0.1" port {busy})' in rec["message"], rec
    assert "Address already in use" in rec["message"], rec
    assert spare_bound == set(), spare_bound
    assert [p["op"] for p in pongs] == ["pong", "pong"], pongs  # the limit of 1 did not apply


@t.test
def an_invalid_listener_on_sighup_is_refused_as_check_config_refuses_it():
    """A listener without a port, and one whose address does not resolve: each SIGHUP is
    refused with the reason --check-config gives for the same file, and the listener runs on."""
    need_clients()
    with Ksockd() as k:
        results = []
        for bad, word in (({"address": "127.0.0.1"}, '"port" is required'),
                          ({"address": "no-such-host.invalid", "port": free_port()},
                           "does not resolve")):
            cfg = json.loads(json.dumps(k.cfg))
            cfg["websocket"]["listeners"].append(bad)
            text = k.reload(cfg, expect="reload failed")
            chk = subprocess.run([KSOCKD, "--check-config", k.config], capture_output=True,
                                 text=True, timeout=30)
            results.append((text, chk, word))

        async def go():
            async with connect(k.url, token()) as ws:
                return await call(ws, {"op": "ping", "id": "p"})
        pong = run(go())
    for text, chk, word in results:
        rec = [json.loads(x) for x in text.splitlines() if "reload failed" in x][0]
        assert word in rec["message"] and "listeners[1]" in rec["message"], rec
        assert chk.returncode == 2 and word in chk.stderr, (chk.returncode, chk.stderr)
    assert pong == {"op": "pong", "id": "p"}, pong


@t.test
def a_serializer_not_served_at_start_needs_a_restart():
    """The subprotocol list is fixed when the listeners start: a reload that adds msgpack to a
    json-only server is refused and says why, and json still answers."""
    need_clients()
    with Ksockd(serializers={"json": {}}) as k:
        cfg = json.loads(json.dumps(k.cfg))
        cfg["serializers"] = {"json": {}, "msgpack": {}}
        refused = k.reload(cfg, expect="reload failed")

        async def go():
            async with connect(k.url, token()) as ws:
                return await call(ws, {"op": "ping", "id": "p"})
        pong = run(go())
    assert pong == {"op": "pong", "id": "p"}, pong
    assert 'msgpack\\" was not served at start' in refused, refused


t.run()
