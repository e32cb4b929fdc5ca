#!/usr/bin/env python3
"""The tools run from the build directory as a newcomer runs them (README,
"Running uninstalled"): no KSOCK_PLUGIN_PATH, yet build/tools/ksockd and
build/tools/ksock find the plugins built next to them; a copy of the binary
elsewhere does not search around itself; and `echo ... | ksock connect`
prints the replies before it closes (--linger, docs/websocket.md).

    test_uninstalled.py KSOCKD KSOCK WS_ECHO_SERVER [TEST_NAME...]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap  # noqa: E402

KSOCKD, KSOCK, ECHO = (os.path.abspath(p) for p in sys.argv[1:4])
PLUGIN_DIR = os.environ.get("KSOCK_PLUGIN_PATH", "")  # meson's test env: build/plugins
sys.argv[1:4] = [sys.argv[1]]  # Tap reads test names from argv[2:]
t = Tap()


def env_without_plugin_path(**extra):
    env = dict(os.environ, **extra)
    env.pop("KSOCK_PLUGIN_PATH", None)
    return env


def run(cmd, **kw):
    """subprocess.run. In the sanitizer build LeakSanitizer's own tracer crashes while it stops
    the threads of `ksockd --list-plugins` run from the build tree ("LeakSanitizer has
    encountered a fatal error", Tracer caught signal 11; LSan's fault, it happens before any
    leak is looked at). What this file tests is which plugins are found, so such a run is
    repeated with leak detection off; the other sanitizer checks stay on, and a real leak report
    is never retried."""
    r = subprocess.run(cmd, **kw)
    if r.returncode != 0 and "LeakSanitizer has encountered a fatal error" in (r.stderr or ""):
        env = dict(kw.get("env") or os.environ)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        r = subprocess.run(cmd, **dict(kw, env=env))
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoServer:
    def __init__(self):
        self.port = free_port()
        opts = {"listeners": [{"address": "127.0.0.1", "port": self.port, "path": "/ws"}]}
        self.p = subprocess.Popen([ECHO, json.dumps(opts)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True,
                                  env=dict(os.environ, KSOCK_PLUGIN_PATH=PLUGIN_DIR))
        assert "READY" in self.p.stdout.readline()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.p.terminate()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@t.test
def ksockd_lists_the_build_plugins_without_plugin_path():
    r = run([KSOCKD, "--list-plugins"], capture_output=True, text=True, timeout=30,
                       env=env_without_plugin_path())
    assert r.returncode == 0, r
    found = {tuple(line.split()[:2]) for line in r.stdout.splitlines()[1:] if line.strip()}
    for want in [("serializer", "json"), ("serializer", "msgpack"), ("serializer", "protobuf"),
                 ("transport", "ws"), ("auth", "jwt"), ("logsink", "file")]:
        assert want in found, r.stdout
    assert os.path.join(os.path.dirname(os.path.dirname(KSOCKD)), "plugins") in r.stdout


@t.test
def ksock_token_finds_jwt_without_plugin_path():
    r = run([KSOCK, "token", "generate", '{"secret": "' + "k" * 32 + '"}',
                        '{"sub": "alice"}'], capture_output=True, text=True, timeout=30,
                       env=env_without_plugin_path())
    assert r.returncode == 0, r
    assert r.stdout.count(".") == 2, r.stdout


@t.test
def a_copied_binary_does_not_search_next_to_itself():
    with tempfile.TemporaryDirectory() as d:
        # d/tools/ksockd with d/plugins/serializer_json.so beside it: the layout of a build
        # tree, but not this build's, so nothing in it may be loaded.
        os.makedirs(os.path.join(d, "tools"))
        os.makedirs(os.path.join(d, "plugins"))
        exe = os.path.join(d, "tools", "ksockd")
        shutil.copy(KSOCKD, exe)
        shutil.copy(os.path.join(PLUGIN_DIR, "serializer_json.so"), os.path.join(d, "plugins"))
        libdir = os.path.join(os.path.dirname(os.path.dirname(KSOCKD)), "core")
        r = run([exe, "--list-plugins"], capture_output=True, text=True, timeout=30,
                           env=env_without_plugin_path(LD_LIBRARY_PATH=libdir))
        assert r.returncode == 0, r
        assert "serializer_json" not in r.stdout and d not in r.stdout, r.stdout
        assert PLUGIN_DIR not in r.stdout, r.stdout


def connect(port, lines, *args):
    start = time.monotonic()
    r = run([KSOCK, "connect", f"ws://127.0.0.1:{port}/ws", *args],
                       input="".join(line + "\n" for line in lines), capture_output=True,
                       text=True, timeout=30, env=env_without_plugin_path())
    return r, time.monotonic() - start


@t.test
def piped_input_gets_its_replies_printed():
    with EchoServer() as srv:
        lines = ['{"op": "ping", "id": "%d"}' % i for i in range(20)] + ["last line"]
        r, _ = connect(srv.port, lines)
    assert r.returncode == 0, r
    out = r.stdout.splitlines()
    assert len(out) == 21, r
    assert json.loads(out[0]) == {"op": "ping", "id": "0"}
    assert json.loads(out[-1]) == "last line"
    events = [json.loads(line)["event"] for line in r.stderr.splitlines()]
    assert events == ["open", "close"], r.stderr


@t.test
def linger_is_settable():
    with EchoServer() as srv:
        r, took_long = connect(srv.port, ["one"], "--linger", "2500ms")
        assert r.returncode == 0 and r.stdout.splitlines() == ['"one"'], r
        assert took_long >= 2.5, took_long
        r, took_none = connect(srv.port, ["one"], "--linger", "0")
        assert r.returncode == 0, r
        # Relative, so that a slow (sanitizer) build's start-up does not count.
        assert took_long - took_none >= 1.5, (took_long, took_none)
        r, _ = connect(srv.port, ["one"], "--linger", "soon")
        assert r.returncode == 2 and "--linger" in r.stderr, r


t.run()
