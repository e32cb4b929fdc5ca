#!/usr/bin/env python3
"""Our client (the client API through `ksock connect`) against a server nobody
here wrote (Python `websockets`, peer_server.py), and against our own server
for the reconnection scenarios that need a server to die and come back."""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from tap import Tap  # noqa: E402

HAVE_WS = wsutil.ensure_websockets()
KSOCK, SERVER = sys.argv[1], sys.argv[2]
del sys.argv[2]  # tap.py reads test names to run from argv[2:]
PEER = os.path.join(wsutil.HERE, "peer_server.py")
t = Tap()


def need_ws():
    if not HAVE_WS:
        t.skip("Python websockets not installed (tools/setup --test)")


def peer(port, mode="echo"):
    return wsutil.Proc([sys.executable, PEER, str(port), mode], ready="READY")


class Peer:
    """Collects a peer_server's JSON event lines."""

    def __init__(self, proc):
        self.proc, self.events = proc, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.p.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    def of(self, ev):
        return [e for e in self.events if e["ev"] == ev]


class Client:
    """`ksock connect` with stdin, stdout (messages) and stderr (events) wired to the test."""

    def __init__(self, url, *args):
        self.proc = wsutil.Proc([KSOCK, "connect", url, *args], stdin=True)
        self.p = self.proc.p
        self.messages, self.events, self.other = [], [], []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.p.stdout:
            self.messages.append(json.loads(line))

    def _err(self):
        for line in self.p.stderr:
            if line.startswith('{"event"'):
                self.events.append(json.loads(line))
            else:
                self.other.append(line)

    def send(self, line):
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass  # the client already exited; the test checks its events

    def of(self, name):
        return [e for e in self.events if e["event"] == name]

    def wait(self, name, n=1, timeout=15):
        wsutil.wait_for(lambda: len(self.of(name)) >= n, timeout,
                        f"{n} {name} event(s); have {self.events} {self.other}")
        return self.of(name)

    def wait_messages(self, n, timeout=15):
        wsutil.wait_for(lambda: len(self.messages) >= n, timeout,
                        f"{n} messages; have {self.messages}")
        return self.messages

    def finish(self, timeout=15):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        return self.p.wait(timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.__exit__(*exc)


@t.test
def echo_values_through_the_serializer():
    need_ws()
    port = wsutil.free_port()
    with peer(port) as pp, Client(f"ws://127.0.0.1:{port}/chat", "--header", "X-Trace: 42",
                                  "--token", "sekrit", "--query", "room=a b") as c:
        srv = Peer(pp)
        assert c.wait("open")[0]["subprotocol"] == "ksock.v1.json"
        c.send('{"type": "greeting", "payload": "Hello, WebSocket!", "n": [1, 2.5, null, true]}')
        c.send("not json, sent as a string")
        msgs = c.wait_messages(2)
        assert msgs[0] == {"type": "greeting", "payload": "Hello, WebSocket!",
                           "n": [1, 2.5, None, True]}, msgs
        assert msgs[1] == "not json, sent as a string"
        assert c.finish() == 0
        close = c.of("close")[0]
        assert close["code"] == 1000 and close["error"] == "none", close
        conn = srv.of("connect")[0]
        assert conn["path"] == "/chat?room=a%20b", conn
        assert conn["headers"]["x-trace"] == "42"
        assert conn["headers"]["authorization"] == "Bearer sekrit"
        assert conn["headers"]["sec-websocket-protocol"] == "ksock.v1.json"


@t.test
def permessage_deflate_when_enabled():
    need_ws()
    port = wsutil.free_port()
    text = json.dumps({"rows": [{"topic": "orders", "n": i} for i in range(3000)]})
    with peer(port) as pp:
        srv = Peer(pp)
        with Client(f"ws://127.0.0.1:{port}/", "--raw",
                    "--transport", '{"permessage_deflate": true}') as c:
            c.wait("open")
            c.send("/raw " + text)
            assert json.loads(c.wait_messages(1)[0]) == json.loads(text)
            c.send("/raw ")  # an empty message, masked with nothing to mask
            c.send("/raw after")
            assert c.wait_messages(3)[1:] == ["", "after"], c.messages
            assert c.finish() == 0
        conn = srv.of("connect")[0]
        assert "permessage-deflate" in conn["headers"].get("sec-websocket-extensions", ""), conn
        assert conn["extensions"] == ["permessage-deflate"], conn
        # Off by default: nothing offered.
        with Client(f"ws://127.0.0.1:{port}/", "--raw") as c:
            c.wait("open")
            assert c.finish() == 0
        wsutil.wait_for(lambda: len(srv.of("connect")) == 2, 5, "a second connection")
        conn = srv.of("connect")[1]
        assert "sec-websocket-extensions" not in conn["headers"] and conn["extensions"] == [], conn


@t.test
def fragmented_ping_and_close_from_server():
    need_ws()
    port = wsutil.free_port()
    with peer(port, "fragment"), Client(f"ws://127.0.0.1:{port}/", "--raw") as c:
        assert c.wait_messages(1)[0] == "one two three"
        c.send("/close 4000 done here")
        assert c.finish() == 1
        close = c.of("close")[0]
        assert close["code"] == 4000 and close["reason"] == "done here", close
    port = wsutil.free_port()
    with peer(port, "ping"), Client(f"ws://127.0.0.1:{port}/") as c:
        c.wait("open")
        time.sleep(1.5)  # several server pings; websockets drops us if we miss a pong
        c.send('"still alive"')
        assert c.wait_messages(1)[0] == "still alive"
        assert c.finish() == 0


@t.test
def oversize_message_from_server_closes_1009():
    need_ws()
    port = wsutil.free_port()
    with peer(port, "big"), Client(f"ws://127.0.0.1:{port}/") as c:
        close = c.wait("close")[0]
        assert close["code"] == 1009, close
        assert c.p.wait(timeout=10) == 1


@t.test
def final_close_code_stops_reconnecting():
    need_ws()
    port = wsutil.free_port()
    with peer(port, "close4401") as pp, Client(f"ws://127.0.0.1:{port}/", "--reconnect",
                                               "--retry-delay", "50") as c:
        srv = Peer(pp)
        close = c.wait("close")[0]
        assert close["code"] == 4401 and "4401 is final" in close["reason"], close
        assert "token expired" in close["reason"], close
        assert c.of("reconnecting") == []
        assert c.p.wait(timeout=10) == 1
        time.sleep(0.3)
        assert len(srv.of("connect")) == 1


@t.test
def refused_handshake_is_not_retried():
    need_ws()
    port = wsutil.free_port()
    with peer(port, "reject403") as pp, Client(f"ws://127.0.0.1:{port}/", "--reconnect",
                                               "--retry-delay", "50") as c:
        srv = Peer(pp)
        close = c.wait("close")[0]
        assert close["error"] == "KSOCK_E_FORBIDDEN", close
        assert c.of("reconnecting") == []
        time.sleep(0.3)
        assert len(srv.of("rejected")) == 1, srv.events


@t.test
def no_reconnect_means_one_close():
    need_ws()
    port = wsutil.free_port()
    with peer(port) as pp, Client(f"ws://127.0.0.1:{port}/") as c:
        c.wait("open")
        pp.kill()
        close = c.wait("close")[0]
        assert close["code"] == 1006 and close["error"] != "none", close
        assert c.of("reconnecting") == []
        c.send('"too late"')
        assert c.p.wait(timeout=10) == 1


@t.test
def server_killed_and_restarted():
    """Attempts counted, delays within the policy, on_reconnected, queued messages once, in order."""
    port = wsutil.free_port()
    retry, max_delay = 200, 800
    srv = wsutil.start_server(SERVER, port)
    with Client(f"ws://127.0.0.1:{port}/ws", "--reconnect", "--retry-delay", str(retry),
                "--max-delay", str(max_delay), "--max-retries", "-1", "--queue", "100") as c:
        try:
            c.wait("open")
            c.send('"before"')
            c.wait_messages(1)
            srv.kill()  # SIGKILL: no close frame
            c.wait("reconnecting", 1)
            for i in range(5):
                c.send(json.dumps(f"queued {i}"))
            c.wait("reconnecting", 4, timeout=20)
            srv = wsutil.start_server(SERVER, port)
            c.wait("reconnected", 1, timeout=20)
            msgs = c.wait_messages(6)
            time.sleep(0.5)
            assert c.messages == ["before"] + [f"queued {i}" for i in range(5)], c.messages
            recs = c.of("reconnecting")
            for n, e in enumerate(recs, 1):
                assert e["attempt"] == n, recs
                assert 0 <= e["delay"] <= min(max_delay, retry * 2 ** (n - 1)), recs
            # Each attempt starts no sooner than its delay (loosely, from the timestamps).
            for a, b in zip(recs, recs[1:]):
                assert b["t"] - a["t"] >= a["delay"] - 20, recs
            assert c.of("close") == []
            c.send('"after"')
            wsutil.wait_for(lambda: c.messages[-1:] == ["after"], 10, "echo after reconnect")
            assert c.finish() == 0
        finally:
            srv.kill()


@t.test
def gives_up_after_max_retries():
    port = wsutil.free_port()
    srv = wsutil.start_server(SERVER, port)
    with Client(f"ws://127.0.0.1:{port}/ws", "--reconnect", "--retry-delay", "50",
                "--max-retries", "3", "--no-jitter") as c:
        c.wait("open")
        srv.kill()
        close = c.wait("close", timeout=20)[0]
        assert "max_retries (3) reached" in close["reason"], close
        recs = c.of("reconnecting")
        assert [e["attempt"] for e in recs] == [1, 2, 3], recs
        assert [e["delay"] for e in recs] == [50, 100, 200], recs  # exponential, no jitter
        c.send('"queue is off"')
        assert c.p.wait(timeout=10) == 1


@t.test
def fixed_delay_when_exponential_is_off():
    port = wsutil.free_port()
    with Client(f"ws://127.0.0.1:{port}/ws", "--reconnect", "--retry-delay", "40",
                "--max-retries", "4", "--no-jitter", "--no-exponential") as c:
        c.wait("close", timeout=20)
        assert [e["delay"] for e in c.of("reconnecting")] == [40, 40, 40, 40], c.events
        assert c.of("close")[0]["error"] == "KSOCK_E_CONNREFUSED", c.events


@t.test
def bad_usage_exits_2():
    with wsutil.Proc([KSOCK, "connect", "http://nope"]) as p:
        assert p.p.wait(timeout=10) == 2
    with wsutil.Proc([KSOCK, "connect", "ws://127.0.0.1:1/", "--serializer", "nosuch"]) as p:
        assert p.p.wait(timeout=10) == 2
        assert "nosuch" in p.p.stderr.read()


t.run()
