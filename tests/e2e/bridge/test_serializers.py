#!/usr/bin/env python3
"""Which serializers ksockd serves and how a client's offer is answered
(docs/bridge.md, Serializers; docs/protocol.md section 1): every serializer
plugin that loads by default, or exactly those of a "serializers" section;
the first offered subprotocol that is served wins; an offer with none served
gets HTTP 400 and a log record saying what was offered and what is served.
On the embedded cluster, clients are Python `websockets` on loopback.

    test_serializers.py KSOCKD [TEST_NAME...]
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "msgpack")
if HAVE:
    import msgpack  # noqa: E402
    import websockets  # noqa: E402
t = Tap()


def need_clients():
    if not HAVE:
        t.skip("python websockets/msgpack not available (tools/setup --test)")



def config(port, extra=None):
    cfg = {
        "kafka": {"bootstrap.servers": "embedded"},
        "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
        "auth": {"plugin": "none"},
        "log": {"level": "debug", "sinks": [{"type": "console", "level": "debug", "format": "json"}]},
    }
    cfg.update(extra or {})
    return cfg


class Ksockd(KsockdProc):
    """ksockd on a free loopback port with a temporary config; always stopped."""

    def __init__(self, extra=None):
        self.port = free_port()
        super().__init__(KSOCKD, config(self.port, extra), ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def records(self, message):
        """The JSON log records whose message starts with `message`."""
        out = []
        for line in self.log().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("message", "").startswith(message):
                out.append(r)
        return out

    def served(self):
        r = self.records("serializers served")
        assert len(r) == 1, self.log()
        return r[0]["context"]["subprotocols"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def http_status(exc):
    resp = getattr(exc, "response", None)
    if resp is not None:
        return resp.status_code
    return getattr(exc, "status_code", None)


async def refused(url, offer):
    """The HTTP status of an upgrade offering `offer`, or the subprotocol it got."""
    try:
        async with websockets.connect(url, subprotocols=offer) as ws:
            return ws.subprotocol
    except websockets.exceptions.InvalidHandshake as e:
        return http_status(e)


async def json_call(ws, env):
    await ws.send(json.dumps(env))
    return json.loads(await asyncio.wait_for(ws.recv(), 20))


@t.test
def every_loaded_serializer_is_served_by_default():
    need_clients()
    with Ksockd() as k:
        served = k.served()
    assert served == "ksock.v1.json,ksock.v1.msgpack,ksock.v1.protobuf", served


@t.test
def an_unserved_offer_falls_back_to_the_clients_next_choice():
    need_clients()
    with Ksockd() as k:
        async def go():
            async with websockets.connect(k.url,
                                          subprotocols=["ksock.v1.nope", "ksock.v1.msgpack"]) as ws:
                sub = ws.subprotocol
                await ws.send(msgpack.packb({"op": "publish", "id": "m1", "topic": "sr.mp",
                                             "value": b"v"}))
                got = await asyncio.wait_for(ws.recv(), 20)
                return sub, got
        sub, got = run(go())
    assert sub == "ksock.v1.msgpack", sub
    assert isinstance(got, bytes), got
    a = msgpack.unpackb(got)
    assert a["op"] == "ack" and a["id"] == "m1" and a["topic"] == "sr.mp", a


@t.test
def no_served_offer_is_http_400_and_logged():
    need_clients()
    with Ksockd() as k:
        status = run(refused(k.url, ["ksock.v1.nope"]))
        time.sleep(0.2)  # the record is written by the transport thread
        recs = k.records("upgrade refused (400)")
    assert status == 400, status
    assert len(recs) == 1, k.final_log
    r = recs[0]
    assert r["message"] == "upgrade refused (400): no offered subprotocol is served", r
    assert r["context"]["offered"] == "ksock.v1.nope", r
    assert r["context"]["served"] == "ksock.v1.json,ksock.v1.msgpack,ksock.v1.protobuf", r
    assert r["context"]["peer"].startswith("127.0.0.1"), r


@t.test
def a_serializers_section_serves_exactly_those():
    need_clients()
    with Ksockd(extra={"serializers": {"json": {}}}) as k:
        async def go():
            mp = await refused(k.url, ["ksock.v1.msgpack"])
            async with websockets.connect(k.url,
                                          subprotocols=["ksock.v1.msgpack", "ksock.v1.json"]) as ws:
                return mp, ws.subprotocol, await json_call(ws, {"op": "ping", "id": "p"})
        mp, sub, pong = run(go())
        time.sleep(0.2)
        recs = k.records("upgrade refused (400)")
        served = k.served()
    assert served == "ksock.v1.json", served
    assert mp == 400, mp
    assert [r["context"]["served"] for r in recs] == ["ksock.v1.json"], recs
    assert sub == "ksock.v1.json" and pong == {"op": "pong", "id": "p"}, (sub, pong)


@t.test
def json_options_in_the_serializers_section_are_applied():
    """json_topics declares topic t JSON (docs/serialization.md): the options reach the
    plugin (a wrong type is refused at start-up), and a value_json publish to t is acked."""
    need_clients()
    topic = f"jt-{os.getpid()}-{int(time.time() * 1000)}"
    with Ksockd(extra={"serializers": {"json": {"json_topics": [topic]}}}) as k:
        async def go():
            async with websockets.connect(k.url, subprotocols=["ksock.v1.json"]) as ws:
                a = await json_call(ws, {"op": "publish", "id": "j", "topic": topic,
                                         "value_json": {"amount": 12.50, "tags": ["a"]}})
                s = await json_call(ws, {"op": "subscribe", "id": "s", "topic": topic,
                                         "start": "earliest"})
                r = json.loads(await asyncio.wait_for(ws.recv(), 30))
                return a, s, r
        a, s, r = run(go())
        assert k.served() == "ksock.v1.json"
    assert a["op"] == "ack" and a["id"] == "j" and a["topic"] == topic, a
    assert s["op"] == "subscribed", s
    # the record of a topic declared JSON arrives as value_json, numbers as written
    assert r["op"] == "record" and r["offset"] == a["offset"], r
    assert r["value_json"] == {"amount": 12.50, "tags": ["a"]} and "value" not in r, r
    with tempfile.TemporaryDirectory() as d:  # the same section with a wrong type: not started
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump(config(free_port(), {"serializers": {"json": {"json_topics": 5}}}), f)
        r = subprocess.run([KSOCKD, "--config", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "serializers: json: " in r.stderr and '"json_topics"' in r.stderr, r.stderr


def check_config(extra, websocket=None):
    cfg = config(1, extra)
    if websocket:
        cfg["websocket"].update(websocket)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return subprocess.run([KSOCKD, "--check-config", path], capture_output=True, text=True,
                              timeout=30)


@t.test
def check_config_reports_what_would_not_be_served():
    r = check_config({})
    assert r.returncode == 0, r.stderr
    r = check_config({}, {"subprotocols": ["ksock.v1.json", "ksock.v1.nope"]})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'websocket: subprotocols: "ksock.v1.nope" is not served: no serializer plugin named "nope"' \
        in r.stderr, r.stderr
    r = check_config({"serializers": {"nope": {}}})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'serializers: nope: no serializer plugin named "nope"' in r.stderr, r.stderr
    r = check_config({"serializers": {"json": {"bogus": 1}}})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "serializers: json: " in r.stderr and '"bogus"' in r.stderr, r.stderr
    # listed but left out of the section
    r = check_config({"serializers": {"json": {}}}, {"subprotocols": ["ksock.v1.msgpack"]})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert '"ksock.v1.msgpack" is not served: it is not in the "serializers" section' in r.stderr, \
        r.stderr



@t.test
def websocket_transport_is_named_by_its_key():
    """The core knows no transport by name but the default: "transport" picks the plugin."""
    r = check_config({}, {"transport": "ws"})
    assert r.returncode == 0, r.stderr
    r = check_config({}, {"transport": "carrier-pigeon"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'no transport plugin named "carrier-pigeon"' in r.stderr, r.stderr


t.run()
