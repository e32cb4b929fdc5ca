#!/usr/bin/env python3
"""ksockd serving WebSocket clients for publish (docs/bridge.md). Clients are
Python `websockets`, tokens are signed with PyJWT, records are read back with
kcat.

Where ksockd produces: the run's real broker (KSOCK_KAFKA_BOOTSTRAP), else the
embedded cluster ("bootstrap.servers": "embedded", librdkafka's in-process mock
cluster), so the cases that do not read Kafka back (ping, decode errors,
401/400, refusals, server-only ops, subscribe) run on any machine.
KSOCK_BRIDGE_KAFKA=embedded (meson test e2e-bridge-embedded) uses the embedded
cluster even when a broker is set. The cases that read records back with kcat
need the broker and skip without it (need_broker).

    test_bridge.py KSOCKD [TEST_NAME...]
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt")
if HAVE:
    import jwt  # noqa: E402
    import websockets  # noqa: E402
EMBEDDED_ONLY = os.environ.get("KSOCK_BRIDGE_KAFKA") == "embedded"
BOOTSTRAP = None if EMBEDDED_ONLY else os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SECRET = "bridge-test-secret-of-at-least-32-bytes!"
t = Tap()


def need_clients():
    """The case runs against the broker if there is one, else the embedded cluster."""
    if not HAVE:
        t.skip("python websockets/PyJWT not available (tools/setup --test)")


def need_broker():
    """The case reads Kafka back (kcat): the real broker only."""
    need_clients()
    if EMBEDDED_ONLY:
        t.skip("embedded-cluster run (KSOCK_BRIDGE_KAFKA=embedded); e2e-bridge covers it")
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset)")
    if shutil.which("kcat") is None:
        t.skip("kcat not installed")



def token(sub="alice", publish=None, subscribe=None, ttl=600):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl}
    perms = {}
    if publish is not None:
        perms["publish"] = publish
    if subscribe is not None:
        perms["subscribe"] = subscribe
    if perms:
        claims["ksock"] = perms
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Ksockd(KsockdProc):
    """ksockd on a free loopback port with a temporary config; always stopped."""

    def __init__(self, auth=None, extra=None):
        self.port = free_port()
        cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
            "websocket": {"listeners": [{"address": "127.0.0.1", "port": self.port}]},
            "auth": auth if auth is not None else {"plugin": "jwt", "secret": SECRET},
            "log": {"level": "debug",
                    "sinks": [{"type": "console", "level": "debug", "format": "json"}]},
        }
        cfg.update(extra or {})
        super().__init__(KSOCKD, cfg, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def __enter__(self):
        super().__enter__()
        if not BOOTSTRAP:  # the embedded cluster says so at start-up (docs/kafka.md)
            assert "in-process mock cluster" in self.log(), self.log()
        return self


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def connect(url, tok=None, subprotocol="ksock.v1.json"):
    """`async with connect(...) as ws`; the token as a bearer header."""
    headers = {"Authorization": f"Bearer {tok}"} if tok else None
    new_api = int(websockets.__version__.split(".")[0]) >= 14  # renamed extra_headers
    key = "additional_headers" if new_api else "extra_headers"
    return websockets.connect(url, subprotocols=[subprotocol], **{key: headers})


async def call(ws, env):
    await ws.send(json.dumps(env) if isinstance(env, dict) else env)
    return json.loads(await ws.recv())


def kcat_read(topic, partition, offset):
    out = subprocess.run(["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-p", str(partition), "-o",
                          str(offset), "-c", "1", "-e", "-f", "%k %s|%h\n"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def kafka_topics():
    out = subprocess.run(["kcat", "-b", BOOTSTRAP, "-L", "-J"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return {tp["topic"] for tp in json.loads(out.stdout)["topics"]}


def http_status(exc):
    resp = getattr(exc, "response", None)
    if resp is not None:
        return resp.status_code
    return getattr(exc, "status_code", None)


@t.test
def publish_with_token_is_acked_and_in_kafka():
    need_broker()
    topic = f"br.ok.{uuid.uuid4().hex[:8]}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["br.ok.*"])) as ws:
                assert ws.subprotocol == "ksock.v1.json"
                acks = []
                for i in range(3):
                    a = await call(ws, {"op": "publish", "id": f"p{i}", "topic": topic,
                                        "key": f"k{i}", "value": f"hello {i}",
                                        "headers": [{"key": "trace", "value": "t1"}]})
                    acks.append(a)
                return acks
        acks = run(go())
    for i, a in enumerate(acks):
        assert a["op"] == "ack" and a["id"] == f"p{i}" and a["topic"] == topic, a
        assert a["partition"] >= 0 and a["offset"] >= 0, a
    assert acks[2]["offset"] > acks[0]["offset"] or acks[2]["partition"] != acks[0]["partition"]
    for i, a in enumerate(acks):
        line = kcat_read(topic, a["partition"], a["offset"])
        assert line.strip() == f"k{i} hello {i}|trace=t1", line


@t.test
def publish_to_explicit_partition_and_null_key():
    need_broker()
    topic = f"br.ok.{uuid.uuid4().hex[:8]}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=[topic])) as ws:
                return await call(ws, {"op": "publish", "id": "", "topic": topic, "partition": 0,
                                       "value": "no key"})
        a = run(go())
    assert a == {"op": "ack", "id": "", "topic": topic, "partition": 0, "offset": a["offset"]}, a
    line = kcat_read(topic, 0, a["offset"]).rstrip("\n")
    assert line == " no key|", repr(line)  # kcat prints a null key as nothing


@t.test
def msgpack_subprotocol():
    """The same publish over ksock.v1.msgpack (docs/protocol.md section 4), encoded by the
    msgpack PyPI package: binary frames, bin key/value, the ack a msgpack map."""
    need_broker()
    import msgpack
    topic = f"br.mp.{uuid.uuid4().hex[:8]}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["br.mp.*"]),
                               subprotocol="ksock.v1.msgpack") as ws:
                assert ws.subprotocol == "ksock.v1.msgpack"
                await ws.send(msgpack.packb({"op": "publish", "id": "m1", "topic": topic,
                                             "key": b"mk", "value": b"\x00\x01binary",
                                             "headers": [{"key": "h", "value": b"v"}]}))
                got = await asyncio.wait_for(ws.recv(), 30)
                assert isinstance(got, bytes), got
                return msgpack.unpackb(got)
        a = run(go())
    assert a["op"] == "ack" and a["id"] == "m1" and a["topic"] == topic, a
    line = kcat_read(topic, a["partition"], a["offset"])
    assert line.startswith("mk \x00\x01binary|h=v"), repr(line)


@t.test
def value_just_under_the_frame_limit_is_acked():
    """docs/protocol.md, Sizes: the producer's message.max.bytes follows the frame limit
    (websocket.max_message_size, 1 MiB), so a 1,040,000-byte value in a msgpack frame is
    acked and stored whole (librdkafka's own default, 1,000,000, refused it with -18); the
    connection stays open. (A record over the producer's limit is -18: the C test's
    kafka_message_too_large_is_18.)"""
    need_broker()
    import msgpack
    topic = f"br.big.{uuid.uuid4().hex[:8]}"
    big = bytes(range(256)) * (1040000 // 256)
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["br.big.*"]),
                               subprotocol="ksock.v1.msgpack") as ws:
                await ws.send(msgpack.packb({"op": "publish", "id": "b1", "topic": topic,
                                             "value": big}))
                ok = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60))
                await ws.send(msgpack.packb({"op": "ping", "id": "p"}))
                pong = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
                return ok, pong
        ok, pong = run(go())
    assert ok["op"] == "ack" and ok["id"] == "b1", ok
    assert pong["op"] == "pong" and pong["id"] == "p", pong
    r = subprocess.run(["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-p", str(ok["partition"]),
                        "-o", str(ok["offset"]), "-c", "1", "-e", "-f", "%S"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == str(len(big)), (r.stdout, r.stderr)


@t.test
def no_token_is_http_401():
    need_clients()
    with Ksockd() as k:
        async def go():
            try:
                async with connect(k.url, None):
                    pass
            except websockets.exceptions.InvalidHandshake as e:
                return http_status(e)
            return None
        assert run(go()) == 401
        assert "refused" in k.log()


@t.test
def bad_token_is_http_401():
    need_clients()
    with Ksockd() as k:
        async def go():
            bad = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "another-secret-" * 3,
                             algorithm="HS256")
            try:
                async with connect(k.url, bad):
                    pass
            except websockets.exceptions.InvalidHandshake as e:
                return http_status(e)
            return None
        assert run(go()) == 401


@t.test
def publish_without_right_is_forbidden_and_not_produced():
    need_clients()
    u = uuid.uuid4().hex[:8]
    allowed, denied = f"br.ok.{u}", f"br.no.{u}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=[allowed], subscribe=[denied])) as ws:
                e = await call(ws, {"op": "publish", "id": "p8", "topic": denied, "value": "v"})
                # the connection still works after a refusal
                a = await call(ws, {"op": "publish", "id": "p9", "topic": allowed, "value": "v"})
                return e, a
        e, a = run(go())
    assert e["op"] == "error" and e["error_code"] == -16 and e["id"] == "p8", e
    assert e["topic"] == denied, e
    assert a["op"] == "ack" and a["id"] == "p9", a
    if BOOTSTRAP and shutil.which("kcat"):  # the embedded cluster is gone with ksockd
        assert denied not in kafka_topics(), "a refused publish must not reach Kafka"


@t.test
def malformed_frame_is_decode_error_and_connection_stays():
    need_clients()
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["br.ok.*"])) as ws:
                e1 = await call(ws, '{"op": "publish", "topic": ')
                e2 = await call(ws, '{"op": "publish", "topic": "x", "bogus": 1}')
                e3 = await call(ws, {"op": "record", "topic": "x", "partition": 0, "offset": 1})
                p = await call(ws, {"op": "ping", "id": "after"})
                return e1, e2, e3, p
        e1, e2, e3, p = run(go())
    assert e1["op"] == "error" and e1["error_code"] == -19, e1
    assert e1["error_message"].startswith("json: offset"), e1
    assert e2["op"] == "error" and e2["error_code"] == -19, e2  # unknown member: strict decoder
    assert e3["op"] == "error" and e3["error_code"] == -17, e3  # a server-only op
    assert p == {"op": "pong", "id": "after"}, p


@t.test
def error_of_a_request_whose_id_decoded_echoes_it():
    """A pipelining client matches errors by id (docs/protocol.md): a publish without a
    topic is refused with its id."""
    need_broker()
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["*"])) as ws:
                return await call(ws, '{"op": "publish", "id": "x", "value": "v"}')
        e = run(go())
    assert e["op"] == "error" and e["error_code"] == -17 and e["id"] == "x", e


@t.test
def invalid_topic_names_are_refused_before_kafka():
    """Kafka's rule, checked by the bridge: 1-249 of [a-zA-Z0-9._-], not "." or ".."."""
    need_broker()
    u = uuid.uuid4().hex[:8]
    bad = [".", "..", f"br bad {u}", f"br.caf\u00e9.{u}", f"br/{u}", "b" * 250, f"br.nul\u0000{u}"]
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["*"])) as ws:
                out = [await call(ws, {"op": "publish", "id": str(i), "topic": tp, "value": "v"})
                       for i, tp in enumerate(bad)]
                ok = await call(ws, {"op": "publish", "id": "ok", "topic": f"br.ok-_.{u}",
                                     "value": "v"})
                return out, ok
        out, ok = run(go())
    for i, e in enumerate(out):
        assert e["op"] == "error" and e["error_code"] == -17 and e["id"] == str(i), (bad[i], e)
        assert "invalid topic name" in e["error_message"], e
    assert ok["op"] == "ack", ok
    topics = kafka_topics()
    assert not any(u in tp and "ok-_" not in tp for tp in topics), "a refused topic reached Kafka"


@t.test
def ping_pong():
    need_clients()
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token()) as ws:
                return (await call(ws, {"op": "ping", "id": "x"}),
                        await call(ws, {"op": "ping"}))
        assert run(go()) == ({"op": "pong", "id": "x"}, {"op": "pong"})


@t.test
def subscribe_and_unsubscribe_are_answered():
    """subscribed names every partition and where it starts; unsubscribe is answered with its id;
    a topic that does not exist is -29 with the id (docs/protocol.md, Subscriptions)."""
    need_clients()
    topic = f"sub-{os.getpid()}-{int(time.time() * 1000)}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(subscribe=["*"], publish=["*"])) as ws:
                a = await call(ws, {"op": "publish", "id": "p1", "topic": topic, "value": "v"})
                return (a, await call(ws, {"op": "subscribe", "id": "s1", "topic": topic}),
                        await call(ws, {"op": "unsubscribe", "id": "u1", "topic": topic}),
                        await call(ws, {"op": "subscribe", "id": "s2", "topic": topic + "-none"}))
        a, s, u, n = run(go())
    assert a["op"] == "ack", a
    assert s["op"] == "subscribed" and s["id"] == "s1" and s["start"] == "offsets", s
    parts = {o["partition"]: o["offset"] for o in s["offsets"]}
    assert sorted(parts) == list(range(len(parts))), s
    assert parts[a["partition"]] == a["offset"] + 1, (a, s)  # latest: after the record produced
    assert u == {"op": "unsubscribed", "id": "u1", "topic": topic}, u
    if os.environ.get("KSOCK_BRIDGE_KAFKA") == "embedded":
        # librdkafka's mock cluster makes any topic on first use (docs/bridge.md)
        assert n["op"] == "subscribed" and n["id"] == "s2", n
    else:
        assert n["op"] == "error" and n["error_code"] == -29 and n["id"] == "s2", n


@t.test
def no_subprotocol_is_refused():
    need_clients()
    with Ksockd() as k:
        async def go():
            try:
                async with websockets.connect(k.url):
                    pass
            except websockets.exceptions.InvalidHandshake as e:
                return http_status(e)
            return None
        assert run(go()) == 400


@t.test
def websocket_without_auth_section_is_refused():
    # No broker needed: the config is refused before anything connects.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump({"kafka": {"bootstrap.servers": "embedded"},
                       "websocket": {"listeners": [{"address": "127.0.0.1", "port": 1}]}}, f)
        for args in (["--check-config", path], ["--config", path]):
            r = subprocess.run([KSOCKD] + args, capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (args, r.returncode, r.stderr)
            assert "needs an \"auth\" section" in r.stderr, r.stderr


@t.test
def delivery_after_close_is_dropped_safely():
    need_broker()
    topic = f"br.ok.{uuid.uuid4().hex[:8]}"
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token(publish=["br.ok.*"])) as ws:
                for i in range(50):  # no waiting for acks: close with all of them in flight
                    await ws.send(json.dumps({"op": "publish", "id": str(i), "topic": topic,
                                              "value": "v"}))
            async with connect(k.url, token(publish=["br.ok.*"])) as ws:
                return await call(ws, {"op": "publish", "id": "after", "topic": topic,
                                       "value": "v"})
        a = run(go())
        assert a["op"] == "ack" and a["id"] == "after", a
    # the exit status (checked on leaving `with`) covers the sanitizer builds
    st = k.stats()
    assert st["published"] == 51 and st["publish_errors"] == 0, st
    assert 1 <= st["dropped"] <= 50, f"acks of the closed connection must be dropped: {st}"


@t.test
def many_publishes_in_flight_are_each_answered_once():
    """More publishes than the in-flight bound, sent before reading any reply: ksockd
    pauses reading at the bound instead of refusing (docs/bridge.md, Bounds)."""
    need_broker()
    topic = f"br.ok.{uuid.uuid4().hex[:8]}"
    n, bound = 1500, 100
    with Ksockd(extra={"bridge": {"max_inflight": bound}}) as k:
        async def go():
            async with connect(k.url, token(publish=["br.ok.*"])) as ws:
                for i in range(n):
                    await ws.send(json.dumps({"op": "publish", "id": str(i), "topic": topic,
                                              "value": "v"}))
                return [json.loads(await ws.recv()) for _ in range(n)]
        replies = run(go())
    ids = sorted(int(r["id"]) for r in replies)
    assert ids == list(range(n)), "each publish answered exactly once"
    for r in replies:
        assert r["op"] == "ack", r  # no -23: pipelining is not refused
    st = k.stats()
    assert 0 < st["inflight_max"] <= bound, f"the server's in-flight bound did not hold: {st}"
    assert st["paused"] > 0, st


@t.test
def anonymous_auth_none_publishes():
    need_clients()
    topic = f"br.anon.{uuid.uuid4().hex[:8]}"
    with Ksockd(auth={"plugin": "none"}) as k:
        async def go():
            async with connect(k.url, None) as ws:
                return await call(ws, {"op": "publish", "id": "a", "topic": topic, "value": "x"})
        a = run(go())
        assert "every client may publish to every topic" in k.log()
    assert a["op"] == "ack" and a["id"] == "a", a


t.run()
