"""Helpers shared by the WebSocket end-to-end tests (issue 5).

The tests need the PyPI `websockets` package: when the running interpreter
lacks it they re-run themselves under $KSOCK_TEST_VENV/bin/python (made by
tools/setup --test), and report every test skipped if that is missing too.
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import testvenv  # noqa: E402


def ensure_websockets():
    """Return True when `websockets` can be imported, re-executing under the venv if needed."""
    return testvenv.need("websockets")


def raise_fd_limit(n=8192):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, what="condition", step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A helper process started for one test and always stopped (context manager)."""

    def __init__(self, argv, ready=None, stdin=False, env=None, timeout=10, graceful=False):
        self.argv = argv
        self.graceful = graceful
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  text=True, bufsize=1, env=env)
        if ready:
            line = self.p.stdout.readline()
            if ready not in line:
                err = self.p.stderr.read() if self.p.poll() is not None else ""
                self.kill()
                raise AssertionError(f"{argv[0]} did not start: {line!r} {err}")

    def kill(self, sig=9):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.graceful and exc[0] is not None:
            # The test failed: show what the helper said (a crash report, say).
            if self.p.poll() is None:
                self.kill(15)
            err = self.p.stderr.read() if self.p.stderr else ""
            for line in err.splitlines()[-60:]:
                print(f"# {self.argv[0]}: {line}")
            print(f"# {self.argv[0]} exit status {self.p.returncode}")
        if self.graceful and self.p.poll() is None:
            # SIGTERM: the helper stops cleanly, so sanitizers get to report at exit.
            self.kill(15)
            err = self.p.stderr.read() if self.p.stderr else ""
            if exc[0] is None and "Sanitizer" in err:
                raise AssertionError(f"{self.argv[0]}: sanitizer report:\n{err}")
            if exc[0] is None and self.p.returncode not in (0, -15):
                raise AssertionError(f"{self.argv[0]} exited {self.p.returncode}:\n{err}")
        self.kill()
        for f in (self.p.stdout, self.p.stderr, self.p.stdin):
            if f:
                try:
                    f.close()
                except OSError:
                    pass


def start_server(server_bin, port, **opts):
    """Our ws_echo_server on 127.0.0.1:port/ws with transport options `opts`."""
    import json
    o = {"listeners": [{"address": "127.0.0.1", "port": port, "path": "/ws"}]}
    # The suite runs once per libwebsockets event loop (see meson.build).
    if os.environ.get("KSOCK_WS_EVENT_LIB"):
        o["event_lib"] = os.environ["KSOCK_WS_EVENT_LIB"]
    o.update(opts)
    return Proc([server_bin, json.dumps(o)], ready="READY", graceful=True)


# ---- the host's view and raw sockets (test_ws_server.py, test_ws_frames.py) --------

def server_closes(port, path="/ws"):
    """The close events our server's host saw (ws_echo_server __closes__), oldest first."""
    import asyncio
    import websockets

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}",
                                      subprotocols=["ksock.v1.json"]) as ws:
            await ws.send("__closes__")
            return json.loads(await ws.recv())
    return asyncio.run(asyncio.wait_for(go(), 30))


def wait_server_close(port, pred, what):
    """Wait until the host has seen a close event matching pred; return it."""
    end = time.monotonic() + 10
    while True:
        seen = server_closes(port)
        hits = [c for c in seen if pred(c)]
        if hits:
            return hits[-1]
        if time.monotonic() > end:
            raise AssertionError(f"the server never saw {what}; it saw {seen}")
        time.sleep(0.1)


def raw_upgrade(port, path="/ws"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ksock.v1.json\r\n\r\n")
              .encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "connection closed during the upgrade"
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
    return s, buf.split(b"\r\n\r\n", 1)[1]


def frame(opcode, payload, fin=True):
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_close(s, pending=b"", timeout=5):
    """Read frames until a close frame; return its code (None if the socket just closed)."""
    s.settimeout(timeout)
    buf = pending
    while True:
        while len(buf) >= 2:
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
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
            payload, buf = buf[off:off + n], buf[off + n:]
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return None
        if not chunk:
            return None
        buf += chunk
