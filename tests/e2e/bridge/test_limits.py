#!/usr/bin/env python3
"""ksockd's limits and token lifetime (docs/bridge.md, Limits; docs/auth.md, Expiry and
refresh; docs/protocol.md, Tokens), with Python `websockets` clients and PyJWT tokens against
the run's real broker (KSOCK_KAFKA_BOOTSTRAP), else the embedded cluster. Each limit: its code
and its counter (the "bridge limits and tokens" record ksockd logs when it stops).

    test_limits.py KSOCKD KSOCK [TEST_NAME...]
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port, metric  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt", "prometheus_client")  # may re-run this file in the venv
KSOCK = sys.argv.pop(2)  # the CLI (ksock tail --token-command); TEST_NAMEs follow
if HAVE:
    import jwt  # noqa: E402
    import websockets  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SECRET = "limits-test-secret-of-at-least-32-bytes!"
t = Tap()


def need_clients():
    if not HAVE:
        t.skip("python websockets/PyJWT not available (tools/setup --test)")


def token(sub="alice", publish=("*",), subscribe=("*",), exp=None, ttl=600):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": exp if exp is not None else now + ttl,
              "ksock": {"publish": list(publish), "subscribe": list(subscribe)}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Ksockd(KsockdProc):
    """ksockd with the jwt authenticator (leeway 0: a token's exp is exact) on a free port."""

    def __init__(self, bridge=None, websocket=None):
        self.port = free_port()
        self.admin_port = free_port()
        ws = {"listeners": [{"address": "127.0.0.1", "port": self.port}]}
        ws.update(websocket or {})
        cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
            "websocket": ws,
            "auth": {"plugin": "jwt", "secret": SECRET, "leeway": "0s"},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
            "admin": {"port": self.admin_port},
        }
        if bridge is not None:
            cfg["bridge"] = bridge
        super().__init__(KSOCKD, cfg, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def metric(self, name, **labels):
        return metric(self.admin_port, name, **labels)

    def counters(self):
        for line in self.log().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("message") == "bridge limits and tokens":
                return r["context"]
        raise AssertionError("no 'bridge limits and tokens' record:\n" + self.log()[-3000:])


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(url, tok, **kw):
    new_api = int(websockets.__version__.split(".")[0]) >= 14  # renamed extra_headers
    key = "additional_headers" if new_api else "extra_headers"
    return websockets.connect(url, subprotocols=["ksock.v1.json"], max_size=None,
                              **{key: {"Authorization": f"Bearer {tok}"}}, **kw)


async def call(ws, env):
    await ws.send(json.dumps(env))
    return json.loads(await ws.recv())


def http_status(exc):
    resp = getattr(exc, "response", None)
    return resp.status_code if resp is not None else getattr(exc, "status_code", None)


async def refused_status(url, tok):
    try:
        async with connect(url, tok):
            pass
    except Exception as e:  # noqa: BLE001 - InvalidStatus or InvalidStatusCode by version
        return http_status(e)
    return None


def close_code(ws):
    return ws.close_code if hasattr(ws, "close_code") else ws.close_rcvd.code


async def make_topic(ws, topic):
    """Publish once so the topic exists (the broker creates it on first produce)."""
    a = await call(ws, {"op": "publish", "id": "mk", "topic": topic, "value": "x"})
    assert a["op"] == "ack", a


# ---- Connections ---------------------------------------------------------------------------

@t.test
def connections_per_principal_over_the_limit_get_429():
    """max_connections_per_principal 2: alice's third is refused with HTTP 429 while bob still
    connects, and alice may connect again once one of hers closed."""
    need_clients()
    with Ksockd(bridge={"max_connections_per_principal": 2}) as k:
        async def go():
            a1 = await connect(k.url, token("alice"))
            a2 = await connect(k.url, token("alice"))
            third = await refused_status(k.url, token("alice"))
            async with connect(k.url, token("bob")) as b:
                pong = await call(b, {"op": "ping", "id": "b"})
            await a1.close()
            await asyncio.sleep(0.3)  # the close reaches the loop
            async with connect(k.url, token("alice")) as a3:
                again = await call(a3, {"op": "ping", "id": "a3"})
            await a2.close()
            return third, pong, again
        third, pong, again = run(go())
        assert k.metric("ksock_limit_events_total", limit="connections_per_principal") == 1
        assert k.metric("ksock_auth_failures_total", reason="other") == 0  # not an auth failure
    assert third == 429, third
    assert pong == {"op": "pong", "id": "b"} and again == {"op": "pong", "id": "a3"}
    assert k.counters()["limit_principal"] == 1, k.counters()
    assert "too many connections for this principal" in k.log()


@t.test
def connections_in_total_over_max_connections_get_503():
    """websocket.max_connections 2 (the transport's, checked before the token): any third
    client is refused with HTTP 503."""
    need_clients()
    with Ksockd(websocket={"max_connections": 2}) as k:
        async def go():
            a = await connect(k.url, token("alice"))
            b = await connect(k.url, token("bob"))
            st = await refused_status(k.url, token("carol"))
            await a.close()
            await b.close()
            return st
        assert run(go()) == 503
        assert k.metric("ksock_limit_events_total", limit="connections") == 1
    assert k.counters()["limit_connections"] == 1, k.counters()


# ---- Subscriptions, message size, handshake --------------------------------------------------

@t.test
def subscriptions_per_connection_over_the_limit_get_minus_22():
    need_clients()
    topics = [f"lim.sub.{uuid.uuid4().hex[:8]}.{i}" for i in range(3)]
    with Ksockd(bridge={"max_subscriptions": 2}) as k:
        async def go():
            async with connect(k.url, token()) as ws:
                for tp in topics:
                    await make_topic(ws, tp)
                out = [await call(ws, {"op": "subscribe", "id": f"s{i}", "topic": tp})
                       for i, tp in enumerate(topics)]
                out.append(await call(ws, {"op": "ping", "id": "still"}))
                return out
        s0, s1, s2, pong = run(go())
    assert s0["op"] == "subscribed" and s1["op"] == "subscribed", (s0, s1)
    assert s2["op"] == "error" and s2["error_code"] == -22 and s2["id"] == "s2", s2
    assert s2["topic"] == topics[2], s2
    assert pong == {"op": "pong", "id": "still"}
    assert k.counters()["limit_subscriptions"] == 1, k.counters()


@t.test
def a_message_over_max_message_size_closes_with_1009():
    need_clients()
    with Ksockd(websocket={"max_message_size": "1KiB"}) as k:
        async def go():
            async with connect(k.url, token()) as ws:
                ok = await call(ws, {"op": "ping", "id": "x" * 900})
                await ws.send(json.dumps({"op": "ping", "id": "x" * 2000}))
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                except websockets.exceptions.ConnectionClosed:
                    pass
                return ok, close_code(ws)
        ok, code = run(go())
        time.sleep(0.3)
    assert ok["op"] == "pong", ok
    assert code == 1009, code
    assert k.counters()["limit_too_big"] == 1, k.counters()


@t.test
def a_client_that_never_finishes_the_upgrade_is_closed_at_handshake_timeout():
    """websocket.handshake_timeout 1s: a TCP client that sends half a request, and one that
    sends nothing, are both hung up on within a few seconds, while a real client connects."""
    need_clients()
    with Ksockd(websocket={"handshake_timeout": "1s"}) as k:
        half = socket.create_connection(("127.0.0.1", k.port))
        half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        mute = socket.create_connection(("127.0.0.1", k.port))
        t0 = time.monotonic()
        for s in (half, mute):
            s.settimeout(15)
            try:
                while s.recv(4096):  # until the server hangs up (a timeout raises)
                    pass
            except ConnectionResetError:
                pass
            s.close()
        waited = time.monotonic() - t0
        async def go():
            async with connect(k.url, token()) as ws:
                return await call(ws, {"op": "ping", "id": "p"})
        assert run(go()) == {"op": "pong", "id": "p"}
    assert waited < 10, f"hung up after {waited:.1f} s"
    print(f"# both half-open clients closed after {waited:.1f} s")


# ---- Publish rate -------------------------------------------------------------------------

async def pipelined(ws, topic, n, tag):
    """n publishes sent without waiting; returns the replies and when the last arrived."""
    replies = []

    async def reader():
        while len(replies) < n:
            replies.append(json.loads(await ws.recv()))

    rt = asyncio.ensure_future(reader())
    for i in range(n):
        await ws.send(json.dumps({"op": "publish", "id": f"{tag}{i}", "topic": topic,
                                  "value": f"{tag}{i}"}))
    await rt
    return replies, time.monotonic()


@t.test
def publish_rate_pauses_the_client_and_never_slows_another():
    """publish_rate 20/s, burst 20: 100 pipelined publishes all acked (nothing refused), over
    at least (100 - 20) / 20 = 4 s; meanwhile another client's 20 publishes, within its own
    burst, are all acked before the first client's are."""
    need_clients()
    topic = f"lim.rate.{uuid.uuid4().hex[:8]}"
    with Ksockd(bridge={"publish_rate": 20, "publish_burst": 20}) as k:
        async def go():
            async with connect(k.url, token("alice")) as a, connect(k.url, token("bob")) as b:
                await make_topic(b, topic)
                t0 = time.monotonic()
                fast = asyncio.ensure_future(pipelined(a, topic, 100, "a"))
                await asyncio.sleep(1.5)  # a is at its limit by now (20 in the first instant)
                other, other_done = await pipelined(b, topic, 20, "b")
                slow, slow_done = await fast
                return t0, slow, slow_done, other, other_done
        t0, slow, slow_done, other, other_done = run(go())
    assert all(r["op"] == "ack" for r in slow), [r for r in slow if r["op"] != "ack"][:3]
    assert all(r["op"] == "ack" for r in other), [r for r in other if r["op"] != "ack"][:3]
    assert slow_done - t0 >= 3.9, f"100 publishes at 20/s took {slow_done - t0:.2f} s"
    assert other_done < slow_done - 1, (other_done - t0, slow_done - t0)
    c = k.counters()
    assert c["limit_rate_paused"] > 0, c
    print(f"# limited client: {slow_done - t0:.2f} s for 100; the other done at "
          f"{other_done - t0:.2f} s; paused {c['limit_rate_paused']} times")


# ---- Token lifetime --------------------------------------------------------------------------

async def wait_closed(ws):
    try:
        while True:
            await ws.recv()
    except websockets.exceptions.ConnectionClosed:
        pass
    return time.time(), close_code(ws), ws.close_reason if hasattr(ws, "close_reason") \
        else ws.close_rcvd.reason


@t.test
def a_token_that_expires_closes_the_connection_with_4401_at_expiry():
    need_clients()
    with Ksockd() as k:
        exp = int(time.time()) + 3  # once ksockd is up (slow under valgrind)

        async def go():
            async with connect(k.url, token(exp=exp)) as ws:
                pong = await call(ws, {"op": "ping", "id": "p"})
                return pong, await wait_closed(ws)
        pong, (at, code, reason) = run(go())
        time.sleep(0.2)
    assert pong == {"op": "pong", "id": "p"}
    assert code == 4401 and reason == "token expired", (code, reason)
    assert exp <= at < exp + 1.5, f"closed {at - exp:+.3f} s from exp"
    assert k.counters()["token_expired"] == 1, k.counters()
    print(f"# closed {at - exp:+.3f} s from exp")


@t.test
def a_refreshed_token_keeps_the_connection_past_the_old_expiry():
    need_clients()
    with Ksockd() as k:
        exp = int(time.time()) + 3  # once ksockd is up (slow under valgrind)

        async def go():
            async with connect(k.url, token(exp=exp)) as ws:
                new_exp = int(time.time()) + 600
                ans = await call(ws, {"op": "token", "id": "t1", "value": token(exp=new_exp)})
                await asyncio.sleep(exp - time.time() + 1.5)
                return ans, new_exp, await call(ws, {"op": "ping", "id": "after"})
        ans, new_exp, pong = run(go())
    assert ans == {"op": "token", "id": "t1", "timestamp": new_exp * 1000}, ans
    assert pong == {"op": "pong", "id": "after"}
    c = k.counters()
    assert c["token_refreshed"] == 1 and c["token_expired"] == 0, c


@t.test
def a_refresh_that_removes_a_permission_ends_that_subscription_with_minus_16():
    """Subscribed to A and B; the new token allows only A: B ends with -16 and its topic, A
    keeps delivering, B delivers nothing more, and publishing to B is refused."""
    need_clients()
    ta, tb = (f"lim.perm.{uuid.uuid4().hex[:8]}.{x}" for x in "ab")
    with Ksockd() as k:
        async def go():
            async with connect(k.url, token()) as ws, connect(k.url, token("writer")) as w:
                await make_topic(w, ta)
                await make_topic(w, tb)
                for tp in (ta, tb):
                    s = await call(ws, {"op": "subscribe", "id": tp, "topic": tp})
                    assert s["op"] == "subscribed", s
                ans = []
                await ws.send(json.dumps({"op": "token", "id": "t", "value": token(
                    publish=[ta], subscribe=[ta])}))
                while not ans or ans[-1]["op"] != "token":
                    ans.append(json.loads(await ws.recv()))
                for tp in (tb, ta):
                    a = await call(w, {"op": "publish", "id": "p", "topic": tp, "value": tp})
                    assert a["op"] == "ack", a
                rec = json.loads(await asyncio.wait_for(ws.recv(), 15))
                pub = await call(ws, {"op": "publish", "id": "pb", "topic": tb, "value": "no"})
                return ans, rec, pub
        ans, rec, pub = run(go())
    assert ans[0]["op"] == "error" and ans[0]["error_code"] == -16 and ans[0]["topic"] == tb, ans
    assert [a["op"] for a in ans] == ["error", "token"], ans
    assert rec["op"] == "record" and rec["topic"] == ta and rec["value"] == ta, rec
    assert pub["op"] == "error" and pub["error_code"] == -16 and pub["id"] == "pb", pub
    assert k.counters()["token_revoked"] == 1, k.counters()


@t.test
def a_bad_token_is_refused_with_minus_15_and_the_old_one_stays_until_it_expires():
    need_clients()
    with Ksockd() as k:
        exp = int(time.time()) + 3  # once ksockd is up (slow under valgrind)

        async def go():
            async with connect(k.url, token(exp=exp)) as ws:
                bad = await call(ws, {"op": "token", "id": "b1", "value": "not.a.jwt"})
                forged = jwt.encode({"sub": "alice", "exp": exp + 600}, "another-secret-" * 3,
                                    algorithm="HS256")
                bad2 = await call(ws, {"op": "token", "id": "b2", "value": forged})
                other = await call(ws, {"op": "token", "id": "b3",
                                        "value": token("mallory", ttl=600)})
                empty = await call(ws, {"op": "token", "id": "b4"})
                pong = await call(ws, {"op": "ping", "id": "still"})
                return bad, bad2, other, empty, pong, await wait_closed(ws)
        bad, bad2, other, empty, pong, (at, code, _) = run(go())
        time.sleep(0.2)
        assert k.metric("ksock_token_events_total", event="refused") == 4
        assert k.metric("ksock_token_events_total", event="expired") == 1
    for r, rid in ((bad, "b1"), (bad2, "b2"), (other, "b3")):
        assert r["op"] == "error" and r["error_code"] == -15 and r["id"] == rid, r
    assert "another subject" in other["error_message"], other
    assert empty["op"] == "error" and empty["error_code"] == -17 and empty["id"] == "b4", empty
    assert pong == {"op": "pong", "id": "still"}
    assert code == 4401 and exp <= at < exp + 1.5, (code, at - exp)
    assert k.counters()["token_refused"] == 4, k.counters()


@t.test
def ksock_tail_with_a_token_command_outlives_three_token_lifetimes():
    """The client API's refresh callback (ksock_ws_on_token_refresh) through `ksock tail
    --token-command`: every token lives 10 s (slack for a loaded sanitizer build: the refresh
    comes halfway, 5 s before expiry); after 31 s the connection is still the first one
    (no 4401, no reconnect) and a record published then is printed. The command ran at start
    and for each refresh; the server counted the refreshes and no expiry."""
    need_clients()
    topic = f"lim.tail.{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as d, Ksockd() as k:
        calls = os.path.join(d, "calls")
        script = os.path.join(d, "tok.py")
        with open(script, "w") as f:
            f.write("import time, jwt\n"
                    f"open({calls!r}, 'a').write('x')\n"
                    "now = int(time.time())\n"
                    "print(jwt.encode({'sub': 'alice', 'iat': now, 'exp': now + 10,\n"
                    "                  'ksock': {'subscribe': ['*']}},\n"
                    f"                 {SECRET!r}, algorithm='HS256'))\n")

        async def setup():
            async with connect(k.url, token("writer")) as w:
                await make_topic(w, topic)
        run(setup())
        tail = subprocess.Popen([KSOCK, "tail", k.url, "--topic", topic, "--token-command",
                                 f"{sys.executable} {script}", "--count", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(31)
            assert tail.poll() is None, tail.communicate()

            async def publish():
                async with connect(k.url, token("writer")) as w:
                    a = await call(w, {"op": "publish", "id": "p", "topic": topic,
                                       "value": "after-31s"})
                    assert a["op"] == "ack", a
            run(publish())
            out, err = tail.communicate(timeout=20)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate()
        with open(calls) as f:
            ncalls = len(f.read())
    assert tail.returncode == 0, (tail.returncode, err)
    assert json.loads(out.splitlines()[0])["value"] == "after-31s", out
    assert "reconnect" not in err and "4401" not in err, err
    c = k.counters()
    assert c["token_refreshed"] >= 3 and c["token_expired"] == 0, c
    assert ncalls == c["token_refreshed"] + 1, (ncalls, c)
    print(f"# {c['token_refreshed']} refreshes in 31 s of 10-second tokens")


@t.test
def token_op_with_auth_none_is_unsupported():
    need_clients()
    port = free_port()
    cfg = {"kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
           "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
           "auth": {"plugin": "none"},
           "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]}}
    with KsockdProc(KSOCKD, cfg, ready="listening for WebSocket clients"):
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/",
                                          subprotocols=["ksock.v1.json"]) as ws:
                return await call(ws, {"op": "token", "id": "t", "value": "x"})
        r = run(go())
    assert r["op"] == "error" and r["error_code"] == -21 and r["id"] == "t", r


t.run()
