#!/usr/bin/env python3
"""Our WebSocket server (transport_ws through the real loader, in ws_echo_server)
against clients nobody here wrote: Python `websockets`, and raw sockets for
what a well-behaved library will not send (invalid UTF-8, resets, stalls)."""
import asyncio
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import frame, raw_upgrade, read_close, server_closes, wait_server_close  # noqa: E402,F401
from tap import Tap  # noqa: E402

HAVE_WS = wsutil.ensure_websockets()
SERVER = sys.argv[1]
t = Tap()

if HAVE_WS:
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatusCode

SUB = ["ksock.v1.json"]


def need_ws():
    if not HAVE_WS:
        t.skip("Python websockets not installed (tools/setup --test)")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def url(port, path="/ws", query=""):
    return f"ws://127.0.0.1:{port}{path}{query}"


def close_code(e):
    return e.rcvd.code if e.rcvd is not None else None


# ---- tests -------------------------------------------------------------------

@t.test
def echo_text_and_binary():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                assert ws.subprotocol == "ksock.v1.json", ws.subprotocol
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(b"\x00\x01\xff")
                assert await ws.recv() == b"\x00\x01\xff"
                big = "x" * 200000  # larger than the rx buffer: arrives in pieces
                await ws.send(big)
                assert await ws.recv() == big
        run(go())


@t.test
def several_listeners_each_with_its_path():
    need_ws()
    p1, p2 = wsutil.free_port(), wsutil.free_port()
    listeners = [{"address": "127.0.0.1", "port": p1, "path": "/ws"},
                 {"address": "127.0.0.1", "port": p2, "path": "/feed"}]
    with wsutil.start_server(SERVER, p1, listeners=listeners):
        async def go():
            for port, path in ((p1, "/ws"), (p2, "/feed")):
                async with websockets.connect(url(port, path=path), subprotocols=SUB) as ws:
                    await ws.send(f"on {path}")
                    assert await ws.recv() == f"on {path}"
            # Each listener serves its own path only.
            for port, path in ((p1, "/feed"), (p2, "/ws")):
                try:
                    async with websockets.connect(url(port, path=path), subprotocols=SUB):
                        raise AssertionError(f"{path} served on port {port}")
                except InvalidStatusCode as e:
                    assert e.status_code == 404, e
        run(go())


@t.test
def subprotocol_negotiation():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port):
        async def go():
            async with websockets.connect(url(port), subprotocols=["x.v9", "ksock.v1.msgpack"]) as ws:
                assert ws.subprotocol == "ksock.v1.msgpack"
            async with websockets.connect(url(port)) as ws:  # none offered: allowed by default
                assert ws.subprotocol is None
                await ws.send("__hs__")
                assert json.loads(await ws.recv())["subprotocol"] is None
            try:
                async with websockets.connect(url(port), subprotocols=["x.v9"]):
                    raise AssertionError("unsupported subprotocol accepted")
            except InvalidStatusCode as e:
                assert e.status_code == 400, e.status_code
        run(go())
    with wsutil.start_server(SERVER, port, require_subprotocol=True):
        async def go2():
            try:
                async with websockets.connect(url(port)):
                    raise AssertionError("missing subprotocol accepted")
            except InvalidStatusCode as e:
                assert e.status_code == 400
        run(go2())


@t.test
def handshake_reaches_the_core():
    need_ws()
    port = wsutil.free_port()
    # A foreign Origin must be listed (by default only the listener's own host passes).
    with wsutil.start_server(SERVER, port, origins=["https://app.example"]):
        async def go():
            async with websockets.connect(url(port, query="?a=1&b=two"), subprotocols=SUB,
                                          extra_headers={"X-Ksock-Token": "t0k",
                                                         "Authorization": "Bearer abc"},
                                          origin="https://app.example") as ws:
                await ws.send("__hs__")
                hs = json.loads(await ws.recv())
            assert hs["path"] == "/ws" and hs["query"] == "a=1&b=two", hs
            assert hs["token"] == "t0k" and hs["authorization"] == "Bearer abc", hs
            assert hs["origin"] == "https://app.example", hs
            assert hs["peer"].startswith("127.0.0.1:"), hs
            assert hs["client_cert_len"] == 0
        run(go())


@t.test
def refusals_are_http_statuses():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, origins=["https://good.example"]):
        async def status(u, **kw):
            try:
                async with websockets.connect(u, subprotocols=SUB, **kw):
                    return 101
            except InvalidStatusCode as e:
                return e.status_code
        async def go():
            assert await status(url(port, query="?token=bad")) == 401
            assert await status(url(port, query="?token=forbidden")) == 403
            assert await status(url(port, path="/elsewhere")) == 404
            assert await status(url(port), origin="https://evil.example") == 403
            assert await status(url(port), origin="https://good.example") == 101
            assert await status(url(port)) == 101  # no Origin: not a browser
        run(go())


@t.test
def max_connections_answers_503():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, max_connections=3):
        async def go():
            held = [await websockets.connect(url(port), subprotocols=SUB) for _ in range(3)]
            try:
                await websockets.connect(url(port), subprotocols=SUB)
                raise AssertionError("a fourth connection was let in")
            except InvalidStatusCode as e:
                assert e.status_code == 503, e
            # The three still work; once one goes, there is room again.
            for i, ws in enumerate(held):
                await ws.send(f"still {i}")
                assert await ws.recv() == f"still {i}"
            await held.pop().close()
            for _ in range(50):  # the server's close event crosses a thread first
                try:
                    held.append(await websockets.connect(url(port), subprotocols=SUB))
                    break
                except InvalidStatusCode as e:
                    assert e.status_code == 503, e
                    await asyncio.sleep(0.05)
            assert len(held) == 3, "no room after a connection closed"
            for ws in held:
                await ws.close()
        run(go())


@t.test
def permessage_deflate_when_enabled():
    need_ws()
    port = wsutil.free_port()
    text = json.dumps([{"topic": "orders", "n": i} for i in range(3000)])
    with wsutil.start_server(SERVER, port, permessage_deflate=True, max_message_size="1MiB"):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB, compression="deflate",
                                          max_size=None) as ws:
                assert [e.name for e in ws.extensions] == ["permessage-deflate"], ws.extensions
                await ws.send(text)
                assert await ws.recv() == text
                for i in range(50):
                    await ws.send(f"small {i}")
                    assert await ws.recv() == f"small {i}"
                # Empty messages after others: lws 4.1's deflate aborted the process on them.
                for m in ("", b"", "after"):
                    await ws.send(m)
                    assert await ws.recv() == m
            # 8 MiB that deflates to a few KiB: the limit holds for the inflated size.
            async with websockets.connect(url(port), subprotocols=SUB, compression="deflate",
                                          max_size=None) as ws:
                try:
                    await ws.send("0" * (8 << 20))
                    # The close comes at once (it used to hang ~20 s inside lws's inflate loop).
                    await asyncio.wait_for(ws.recv(), 10)
                    raise AssertionError("an 8 MiB message got through a 1 MiB limit")
                except ConnectionClosed as e:
                    assert close_code(e) in (1009, None), e
        run(go())
        big = [c for c in server_closes(port) if c["code"] == 1009]
        assert len(big) == 1 and big[0]["reason"] == "message too large", big
    with wsutil.start_server(SERVER, port):  # off by default
        async def off():
            async with websockets.connect(url(port), subprotocols=SUB,
                                          compression="deflate") as ws:
                assert ws.extensions == [], ws.extensions
        run(off())


@t.test
def fragmented_messages_are_joined():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.send(["frag-", "men", "ted"])
                assert await ws.recv() == "frag-mented"
                await ws.send([b"\x01", b"\x02\x03"])
                assert await ws.recv() == b"\x01\x02\x03"
        run(go())


@t.test
def ping_pong_and_keepalive():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, ping_interval="1s", idle_timeout="3s"):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB, ping_interval=None) as ws:
                pong = await ws.ping(b"are you there")
                await asyncio.wait_for(pong, 5)
                # The library answers the server's pings: still alive well past idle_timeout.
                await asyncio.sleep(4.5)
                await ws.send("still here")
                assert await ws.recv() == "still here"
        run(go())
        # A peer that answers no ping is dropped after idle_timeout.
        s, rest = raw_upgrade(port)
        t0 = time.monotonic()
        code = read_close(s, rest, timeout=10)
        took = time.monotonic() - t0
        s.close()
        assert 2.0 <= took <= 8.0, (took, code)
        # The host is told why: no close frame (1006), timed out.
        wait_server_close(port, lambda c: c["code"] == 1006 and c["err"] == "KSOCK_E_TIMEDOUT"
                          and "idle" in (c["reason"] or ""), "an idle timeout")


@t.test
def close_codes_both_ways():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.send("__close__ 4001 server says bye")
                try:
                    await ws.recv()
                    raise AssertionError("no close")
                except ConnectionClosed as e:
                    assert close_code(e) == 4001 and e.rcvd.reason == "server says bye", e
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.close(4002, "client says bye")
                assert ws.close_code == 4002, ws.close_code
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.send("__close__ 1000 normal")
                try:
                    await ws.recv()
                except ConnectionClosed as e:
                    assert close_code(e) == 1000
        run(go())
        # What the host saw, each way: its own closes, and the peer's code and reason.
        for code, reason in ((4001, "server says bye"), (4002, "client says bye"),
                             (1000, "normal")):
            wait_server_close(port, lambda c: c["code"] == code and c["reason"] == reason
                              and c["err"] is None, f"close {code} {reason!r}")


@t.test
def invalid_utf8_closes_1007():
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port):
        s, rest = raw_upgrade(port)
        s.sendall(frame(1, b"ok \xc3\x28 bad"))
        assert read_close(s, rest) == 1007
        s.close()
        # Split across fragments: still checked.
        s, rest = raw_upgrade(port)
        s.sendall(frame(1, b"abc\xe2\x82", fin=False) + frame(0, b"\xff", fin=True))
        assert read_close(s, rest) == 1007
        s.close()
        # A code point split across fragments is fine; binary frames are not checked.
        s, rest = raw_upgrade(port)
        s.sendall(frame(1, b"caf\xc3", fin=False) + frame(0, b"\xa9", fin=True) +
                  frame(2, b"\xff\xfe"))
        s.settimeout(5)
        got = rest
        while not (b"\x81\x05caf\xc3\xa9" in got and b"\x82\x02\xff\xfe" in got):
            got += s.recv(4096)  # times out (and fails) if an echo never comes
        s.close()
        need_ws()  # to ask the server what it saw
        seen = [c for c in server_closes(port) if c["code"] == 1007]
        assert len(seen) == 2 and all(c["err"] is None and "UTF-8" in c["reason"]
                                      for c in seen), seen


@t.test
def oversize_message_closes_1009():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, max_message_size="64KiB"):
        async def go():
            seen = []
            for payload in ("y" * 70000, ["z" * 40000, "z" * 40000]):  # one frame; fragments
                async with websockets.connect(url(port), subprotocols=SUB, max_size=None) as ws:
                    try:
                        await ws.send(payload)
                        await ws.recv()
                        raise AssertionError("oversize message accepted")
                    except ConnectionClosed as e:
                        # The server closes while we may still be writing the rest: the
                        # close frame can then be lost to the TCP reset. If it came, 1009.
                        seen.append(close_code(e))
                        assert close_code(e) in (1009, None), e
            print(f"# close codes the client saw: {seen}")
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.send("w" * 65536)  # exactly the limit is fine
                assert len(await ws.recv()) == 65536
        run(go())
        # Whatever the network did to the close frame, the server closed both with 1009.
        big = [c for c in server_closes(port) if c["code"] == 1009]
        assert len(big) == 2 and all(c["reason"] == "message too large" for c in big), big


@t.test
def peer_reset_does_not_hurt():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port) as srv:
        for _ in range(20):
            s, _ = raw_upgrade(port)
            s.sendall(frame(1, b"half a message", fin=False))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                await ws.send("after resets")
                assert await ws.recv() == "after resets"
        run(go())
        assert srv.p.poll() is None
        resets = [c for c in server_closes(port) if c["err"] == "KSOCK_E_CONNRESET"]
        assert len(resets) == 20 and all(c["code"] == 1006 for c in resets), resets


@t.test
def stalled_handshake_times_out():
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, handshake_timeout="1s"):
        stalls = []
        for partial in (b"", b"GET /ws HTTP/1.1\r\nHost: x\r\n"):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(partial)
            stalls.append((s, time.monotonic()))
        for s, t0 in stalls:
            s.settimeout(15)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            took = time.monotonic() - t0
            s.close()
            assert took < 6.0, f"a stalled handshake lived {took:.1f}s"


@t.test
def backpressure_queue_full_then_writable():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port, send_queue_max_frames=64):
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB, max_queue=4) as ws:
                await ws.send("__flood__ 20000")
                await asyncio.sleep(0.5)  # let the server hit the bound while we do not read
                for i in range(20000):
                    assert await ws.recv() == f"flood {i}"
                await ws.send("__stats__")
                st = json.loads(await ws.recv())
                assert st["queue_full"] > 0 and st["writable"] > 0, st
        run(go())


@t.test
def thousand_handshakes_while_hundred_clients_talk():
    need_ws()
    wsutil.raise_fd_limit(4096)
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port) as srv:
        async def talker(i, stop, counts):
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                n = 0
                while not stop.is_set():
                    msg = f"c{i} m{n}"
                    await ws.send(msg)
                    assert await ws.recv() == msg
                    n += 1
                counts[i] = n

        async def handshake(sem, ok):
            async with sem:
                async with websockets.connect(url(port), subprotocols=SUB, open_timeout=20):
                    ok.append(1)

        async def go():
            stop, counts, ok = asyncio.Event(), {}, []
            talkers = [asyncio.create_task(talker(i, stop, counts)) for i in range(100)]
            await asyncio.sleep(0.5)
            sem = asyncio.Semaphore(100)
            t0 = time.monotonic()
            await asyncio.gather(*(handshake(sem, ok) for _ in range(1000)))
            took = time.monotonic() - t0
            stop.set()
            await asyncio.gather(*talkers)
            assert len(ok) == 1000
            assert len(counts) == 100 and min(counts.values()) > 0, counts
            print(f"# 1000 handshakes in {took:.2f}s; talkers exchanged "
                  f"{sum(counts.values())} messages (min {min(counts.values())})")
        run(go())
        assert srv.p.poll() is None


@t.test
def stops_cleanly_on_sigterm():
    need_ws()
    port = wsutil.free_port()
    with wsutil.start_server(SERVER, port) as srv:
        async def go():
            async with websockets.connect(url(port), subprotocols=SUB) as ws:
                srv.p.terminate()
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                    raise AssertionError("no close on shutdown")
                except ConnectionClosed as e:
                    assert close_code(e) == 1001, e
        run(go())
        assert srv.p.wait(timeout=10) == 0


@t.test
def bad_listener_options_are_refused():
    for opts, needle in ((json.dumps({"listeners": [{"port": 1, "colour": "red"}]}), "colour"),
                         (json.dumps({"listeners": [{"address": "127.0.0.1"}]}), "port"),
                         (json.dumps({"bogus": 1}), "bogus")):
        with wsutil.Proc([SERVER, opts]) as p:
            rc = p.p.wait(timeout=10)
            err = p.p.stderr.read()
        assert rc == 2 and needle in err, (rc, err)


t.run()
