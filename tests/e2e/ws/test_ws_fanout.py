#!/usr/bin/env python3
"""Fan-out through the transport vtable's send_many (ABI 1.2) and the ws
transport's batched writes, against clients nobody here wrote (Python
`websockets`).

argv: ws_fanout_server ws_echo_server. ws_fanout_server (C, the real loader)
sends each frame with one send_many() to every connection it has seen;
ws_echo_server's __flood__ gives one connection a backlog of small frames,
whose write syscalls strace counts. meson runs the file twice, the second time
with KSOCK_WS_EVENT_LIB=poll (lws's other event loop)."""
import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from tap import Tap  # noqa: E402

HAVE_WS = wsutil.ensure_websockets()
FANOUT, ECHO = sys.argv[1], sys.argv[2]
del sys.argv[2]  # tap.py reads test names to run from argv[2:]
t = Tap()

if HAVE_WS:
    import websockets

SUB = ["ksock.v1.json"]
SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 204800, 3]  # ws_fanout_server.c
FILL_FRAME = 16384
KSOCK_E_CLOSED_IDS = 11  # the 10 closed connections and one id that never existed


def need_ws():
    if not HAVE_WS:
        t.skip("Python websockets not installed (tools/setup --test)")


def run(coro, timeout=240):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(port):
    return f"ws://127.0.0.1:{port}/ws"


def fanout_frame(k):
    """Frame k of ws_fanout_server's __fanout__: text for even k, binary for odd."""
    n = SIZES[k] if k < len(SIZES) else (k * 37) % 300
    if k % 2:
        return bytes((k * 7 + j) % 251 for j in range(n))
    return "".join(chr(ord("a") + (k + j) % 26) for j in range(n))


FILL_BASE = bytes(i % 251 for i in range(FILL_FRAME + 251))


def fill_frame(seq):
    """ws_fanout_server's fill frame: seq (8 bytes), then (seq + j) % 251 for j = 8..16383."""
    o = (seq + 8) % 251
    return seq.to_bytes(8, "big") + FILL_BASE[o:o + FILL_FRAME - 8]


async def ask(ws, cmd):
    await ws.send(cmd)
    return await ws.recv()


async def expect_fanout(ws, first, k, frames):
    """Read frames first..first+k-1 and compare each, type included, with what was sent."""
    for i in range(first, first + k):
        got = await ws.recv()
        want = frames[i]
        if got != want:
            kind = lambda m: "binary" if isinstance(m, bytes) else "text"  # noqa: E731
            raise AssertionError(f"frame {i}: got {kind(got)} of {len(got)}, "
                                 f"want {kind(want)} of {len(want)}")


async def open_clients(port, n, **kw):
    async def one():
        return await websockets.connect(url(port), subprotocols=SUB, max_size=None,
                                        open_timeout=60, **kw)
    sem = asyncio.Semaphore(50)

    async def limited():
        async with sem:
            return await one()
    return await asyncio.gather(*(limited() for _ in range(n)))


async def wait_count(ctl, closed):
    end = time.monotonic() + 20
    while True:
        c = json.loads(await ask(ctl, "__count__"))
        if c["closed"] == closed:
            return c
        if time.monotonic() > end:
            raise AssertionError(f"the server saw {c}, want {closed} closed")
        await asyncio.sleep(0.05)


def check_counts(res, k, readers):
    want = {"ok": readers * k, "closed": KSOCK_E_CLOSED_IDS * k, "full": 0, "other": 0,
            "returned": KSOCK_E_CLOSED_IDS * k, "ids": readers + KSOCK_E_CLOSED_IDS}
    assert res == want, (res, want)


async def controller(ctl, first, k, frames):
    """Ask for a fan-out from a connection that is among the receivers: frames, then the answer."""
    await ctl.send(f"__fanout__ {first} {k}")
    await expect_fanout(ctl, first, k, frames)
    return json.loads(await ctl.recv())


async def stats(ctl, cid):
    return json.loads(await ask(ctl, f"__stats__ {cid}"))


# ---- tests -------------------------------------------------------------------

@t.test
def send_many_to_200_clients_every_frame_intact_and_in_order():
    need_ws()
    wsutil.raise_fd_limit(4096)
    port = wsutil.free_port()
    frames = [fanout_frame(k) for k in range(11 + 600)]
    with wsutil.start_server(FANOUT, port):
        async def go():
            # Ten connections that close first: their ids answer KSOCK_E_CLOSED.
            gone = await open_clients(port, 10, compression=None)
            for ws in gone:
                await ws.close()
            readers = await open_clients(port, 200, compression=None)
            ctl = readers[0]
            await wait_count(ctl, closed=10)
            # Every header length (7, 16, 64-bit) and its edges, text and binary, 0 to 200 KiB.
            res = (await asyncio.gather(controller(ctl, 0, 11, frames),
                                        *(expect_fanout(ws, 0, 11, frames)
                                          for ws in readers[1:])))[0]
            check_counts(res, 11, 200)
            # 600 small frames at once: many frames per write, headers across write boundaries.
            res = (await asyncio.gather(controller(ctl, 11, 600, frames),
                                        *(expect_fanout(ws, 11, 600, frames)
                                          for ws in readers[1:])))[0]
            check_counts(res, 600, 200)
            await asyncio.gather(*(ws.close() for ws in readers))
        run(go())


@t.test
def queue_full_then_on_writable_once_the_client_reads():
    need_ws()
    port = wsutil.free_port()
    n = 2000  # 32 MiB: more than the socket buffers hold for a client that does not read
    with wsutil.start_server(FANOUT, port, send_queue_max_frames=8):
        async def go():
            gone = await open_clients(port, 1, compression=None)
            await gone[0].close()
            ctl, = await open_clients(port, 1, compression=None)
            # The legacy client stops reading its socket once max_queue messages wait.
            slow = await websockets.connect(url(port), subprotocols=SUB, max_size=None,
                                            compression=None, max_queue=1)
            await wait_count(ctl, closed=1)
            sid = int(await ask(slow, "__id__"))
            await ctl.send(f"__fill__ {sid} {n}")
            # The queue fills, and stays full while nobody reads: no on_writable meanwhile.
            end, last, still = time.monotonic() + 20, None, 0
            while still < 5:
                st = await stats(ctl, sid)
                still = still + 1 if st == last and st["full"] > 0 else 0
                last = st
                assert time.monotonic() < end, f"the queue never settled full: {st}"
                await asyncio.sleep(0.1)
            assert 0 < st["sent"] < n and st["full"] == st["writable"] + 1, st
            for seq in range(n):
                got = await slow.recv()
                if got != fill_frame(seq):
                    raise AssertionError(f"fill frame {seq}: {len(got)} bytes, "
                                         f"seq {int.from_bytes(got[:8], 'big')}")
            st = await stats(ctl, sid)
            assert st["sent"] == n and st["writable"] >= 1 and st["closed_ok"], st
            print(f"# {st['full']} times full, {st['writable']} on_writable")
            await slow.close()
            await ctl.close()
        run(go())


@t.test
def permessage_deflate_clients_get_the_same_frames():
    need_ws()
    port = wsutil.free_port()
    frames = [fanout_frame(k) for k in range(11 + 300)]
    with wsutil.start_server(FANOUT, port, permessage_deflate=True):
        async def go():
            gone = await open_clients(port, 10, compression=None)
            for ws in gone:
                await ws.close()
            deflate = await open_clients(port, 10, compression="deflate")
            plain = await open_clients(port, 10, compression=None)
            for ws in deflate:
                assert [e.name for e in ws.extensions] == ["permessage-deflate"], ws.extensions
            for ws in plain:
                assert ws.extensions == [], ws.extensions
            ctl = deflate[0]
            await wait_count(ctl, closed=10)
            everyone = deflate[1:] + plain
            for first, k in ((0, 11), (11, 300)):
                res = (await asyncio.gather(controller(ctl, first, k, frames),
                                            *(expect_fanout(ws, first, k, frames)
                                              for ws in everyone)))[0]
                check_counts(res, k, 20)
            await asyncio.gather(*(ws.close() for ws in deflate + plain))
        run(go())


def read_frames(buf, out):
    """Parse whole server frames (unmasked) off buf into out as (opcode, payload); the rest."""
    while len(buf) >= 2:
        op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        assert buf[0] & 0xF0 == 0x80 and not buf[1] & 0x80, f"bad frame header {buf[:2].hex()}"
        if n == 126:
            if len(buf) < 4:
                break
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            break
        out.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return buf


@t.test
def pings_between_batched_frames():
    """lws's ping, due while the transport holds a backlog, comes between two of our frames,
    and the stream around it stays intact (a ping inside a batch would break the framing)."""
    n = 2000  # 32 MiB: more than the socket buffers hold while we do not read
    port = wsutil.free_port()
    with wsutil.start_server(FANOUT, port, ping_interval="1s", idle_timeout="20s",
                             send_queue_max_frames=8):
        sock, buf = wsutil.raw_upgrade(port)
        try:
            sock.sendall(wsutil.frame(0x1, b"__id__"))
            frames = []
            while not frames:
                buf = read_frames(buf + sock.recv(4096), frames)
            sid = int(frames.pop()[1])
            sock.sendall(wsutil.frame(0x1, f"__fill__ {sid} {n}".encode()))
            time.sleep(2.5)  # not reading: the queue fills; lws's ping falls due at 1 s
            sock.settimeout(20)
            got, pings = 0, []
            while got < n:
                chunk = sock.recv(1 << 20)
                assert chunk, f"the server closed the connection after {got} frames"
                buf = read_frames(buf + chunk, frames)
                for op, payload in frames:
                    if op == 0x9:
                        pings.append(got)
                        sock.sendall(wsutil.frame(0xA, payload))
                        continue
                    assert op == 0x2 and payload == fill_frame(got), \
                        f"frame {got}: opcode {op}, {len(payload)} bytes"
                    got += 1
                frames.clear()
            assert pings and 0 < pings[0] < n, f"no ping amid the backlog: {pings}"
            print(f"# ping after fill frame {pings[0]} of {n}")
        finally:
            sock.close()


@t.test
def close_after_a_backlog_comes_after_the_last_frame():
    """close() after frames larger than one write (so lws still holds part of them): the client
    gets every frame, then the close frame with the host's code and reason, on a batched
    connection and on a deflate one."""
    need_ws()
    port = wsutil.free_port()
    big = bytes(range(256)) * 800  # 200 KiB: more than one raw write, the rest buffered by lws
    small = [f"small {i}" for i in range(300)]
    with wsutil.start_server(ECHO, port, permessage_deflate=True):
        async def go(compression):
            async with websockets.connect(url(port), subprotocols=SUB, max_size=None,
                                          compression=compression) as ws:
                await ws.send(big)
                for m in small:
                    await ws.send(m)
                await ws.send(big)
                await ws.send("__close__ 4003 after the backlog")
                assert await ws.recv() == big
                for m in small:
                    assert await ws.recv() == m
                assert await ws.recv() == big
                try:
                    await ws.recv()
                    raise AssertionError("a frame after the last echo")
                except websockets.ConnectionClosed as e:
                    assert e.rcvd is not None, "no close frame"
                    assert (e.rcvd.code, e.rcvd.reason) == (4003, "after the backlog"), e
        run(go(None))
        run(go("deflate"))


def strace_works():
    if shutil.which("strace") is None:
        return "strace not installed (tools/setup --test)"
    r = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True)
    return None if r.returncode == 0 else f"strace cannot trace here: {r.stderr.decode()[:100]}"


def strace_counts(path):
    counts = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    return counts


@t.test
def a_backlog_goes_out_many_frames_per_write():
    need_ws()
    why = strace_works()
    if why:
        t.skip(why)
    n = 10000
    port = wsutil.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "strace.txt")
        o = {"listeners": [{"address": "127.0.0.1", "port": port, "path": "/ws"}]}
        if os.environ.get("KSOCK_WS_EVENT_LIB"):
            o["event_lib"] = os.environ["KSOCK_WS_EVENT_LIB"]
        argv = ["strace", "-f", "-qq", "-c", "-o", out,
                "-e", "trace=sendto,sendmsg,write,writev", ECHO, json.dumps(o)]
        with wsutil.Proc(argv, ready="READY") as srv:
            async def go():
                async with websockets.connect(url(port), subprotocols=SUB,
                                              compression=None) as ws:
                    # __flood__ refills the queue from on_writable: a backlog all along.
                    await ws.send(f"__flood__ {n}")
                    for i in range(n):
                        assert await ws.recv() == f"flood {i}"
            run(go())
            # SIGTERM to the server itself: strace writes its summary when it exits.
            with open(f"/proc/{srv.p.pid}/task/{srv.p.pid}/children") as f:
                child = int(f.read().split()[0])
            os.kill(child, 15)
            srv.p.wait(timeout=20)
        counts = strace_counts(out)
    sends = counts.get("sendto", 0) + counts.get("sendmsg", 0)
    print(f"# {n} frames of ~12 bytes: {sends} send syscalls ({n / max(sends, 1):.0f} frames "
          f"each); all write syscalls: {counts}")
    assert 0 < sends < n / 8, counts


t.run()
