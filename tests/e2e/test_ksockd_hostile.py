#!/usr/bin/env python3
"""ksockd against hostile input that reaches it outside the wire protocol:
client-controlled bytes in its log lines (docs/logging.md, "Escaping") and
files named in its config that are not regular files (docs/auth.md,
docs/kafka.md). Embedded Kafka only: runs on any machine.

    test_ksockd_hostile.py KSOCKD [TEST_NAME...]
"""
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap  # noqa: E402

KSOCKD = sys.argv[1]
t = Tap()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def wait_for(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def raw_close(port, reason):
    """Open a WebSocket by hand and close it with `reason` as raw bytes: a
    library client would refuse to send what a hostile one sends."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ksock.v1.json\r\n\r\n")
                  .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, f"connection closed during the handshake: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = struct.pack("!H", 1000) + reason
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
        try:
            while s.recv(4096):  # the server's close, then EOF
                pass
        except (ConnectionResetError, socket.timeout):
            pass


def raw_upgrade(port, host):
    """An upgrade request whose Host header is hostile bytes; ksockd refuses it (403) and logs."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ksock.v1.json\r\n\r\n")
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 403"), head


@t.test
def hostile_close_reasons_reach_the_logs_escaped():
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        js, txt = os.path.join(d, "log.json"), os.path.join(d, "log.txt")
        cfg = os.path.join(d, "ksockd.json")
        sink = {"type": "file", "level": "debug", "flush_interval": "10ms"}
        with open(cfg, "w") as f:
            json.dump({"kafka": {"bootstrap.servers": "embedded"},
                       "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
                       "auth": {"plugin": "none"},
                       "log": {"level": "debug", "sinks": [
                           dict(sink, name="j", path=js, format="json"),
                           dict(sink, name="t", path=txt, format="text")]}}, f)
        p = subprocess.Popen([KSOCKD, "--config", cfg], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: b"ksockd started" in read_bytes(txt), what="start-up")
            raw_close(port, b"\x1b[2J\x1b]0;owned\x07\r\nFAKE ERROR line\x7f\xc2\x9b")
            raw_close(port, b"bad\xff\xfe\xed\xa0\x80utf8")
            raw_upgrade(port, b"ev\xff\x1b[2Jil.example")
            wait_for(lambda: read_bytes(txt).count(b"connection closed") >= 2 and
                     b"upgrade refused" in read_bytes(txt), what="both close records")
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raw_json, raw_txt = read_bytes(js), read_bytes(txt)
        # Every line of the JSON sink is JSON, read strictly: UTF-8, no raw control characters.
        records = [json.loads(line.decode("utf-8", "strict"), strict=True)
                   for line in raw_json.split(b"\n") if line]
        reasons = [r["context"]["reason"] for r in records
                   if r["message"].startswith("connection closed")]
        assert any("\x1b[2J\x1b]0;owned\x07\r\nFAKE ERROR line" in r for r in reasons), reasons
        # A close reason that is not UTF-8 is refused by the transport (1007, RFC 6455 5.5.1),
        # so the bytes never reach a log; the refusal does.
        assert "close reason is not UTF-8" in reasons, reasons
        hosts = [r["context"].get("host", "") for r in records
                 if r["message"].startswith("upgrade refused")]
        assert hosts and all("\x1b" not in h for h in hosts), hosts
        # The text sink: no escape sequence, no forged line, valid UTF-8.
        assert b"\x1b" not in raw_txt and b"\r" not in raw_txt and b"\x07" not in raw_txt
        raw_txt.decode("utf-8", "strict")
        assert b"\xc2\x9b" not in raw_txt
        assert not any(line.startswith(b"FAKE") for line in raw_txt.split(b"\n"))
        assert b"\\x1b[2J\\x1b]0;owned\\x07\\r\\nFAKE ERROR line\\x7f\\u009b" in raw_txt, raw_txt
        assert b"\xff" not in raw_txt and b"\xff" not in raw_json


def refused_at_once(config, fifo):
    """ksockd with `config` must exit at once naming `fifo` as not a regular file."""
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "ksockd.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        start = time.monotonic()
        try:
            r = subprocess.run([KSOCKD, "--config", cfg], capture_output=True, text=True,
                               timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ksockd hangs on the FIFO {fifo}") from None
        assert r.returncode != 0, r
        assert f'"{fifo}" is not a regular file' in r.stderr, r.stderr
        assert time.monotonic() - start < 10


@t.test
def jwt_secret_file_that_is_a_fifo_is_refused():
    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "secret")
        os.mkfifo(fifo)
        refused_at_once({"kafka": {"bootstrap.servers": "embedded"},
                         "websocket": {"listeners": [{"address": "127.0.0.1",
                                                      "port": free_port()}]},
                         "auth": {"plugin": "jwt", "secret.file": fifo}}, fifo)


@t.test
def kafka_secret_file_that_is_a_fifo_is_refused():
    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "password")
        os.mkfifo(fifo)
        refused_at_once({"kafka": {"bootstrap.servers": "embedded",
                                   "security.protocol": "SASL_PLAINTEXT",
                                   "sasl.mechanism": "PLAIN", "sasl.username": "u",
                                   "sasl.password.file": fifo}}, fifo)


t.run()
