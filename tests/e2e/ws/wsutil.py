"""Helpers shared by the WebSocket end-to-end tests (issue 5).

The tests need the PyPI `websockets` package: when the running interpreter
lacks it they re-run themselves under $KSOCK_TEST_VENV/bin/python (made by
tools/setup --test), and report every test skipped if that is missing too.
"""
import os
import socket
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
