#!/usr/bin/env python3
"""ksockd as an operator runs it: start, log, SIGHUP, stop, bad configs, plugin listing."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap  # noqa: E402

KSOCKD = sys.argv[1]
t = Tap()


def write_config(d, obj_or_text):
    path = os.path.join(d, "ksockd.json")
    with open(path, "w") as f:
        f.write(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text))
    return path


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Daemon:
    def __init__(self, config):
        self.p = subprocess.Popen([KSOCKD, "--config", config], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


@t.test
def starts_logs_and_stops_on_sigterm():
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "ksockd.log")
        cfg = write_config(d, {"log": {"sinks": [
            {"type": "file", "path": log, "format": "json", "flush_interval": "10ms"}]}})
        with Daemon(cfg) as k:
            wait_for(lambda: "ksockd started" in read(log), what="start-up record")
            rc, _, _ = k.stop(signal.SIGTERM)
        assert rc == 0, rc
        records = [json.loads(line) for line in read(log).splitlines()]
        started = [r for r in records if r["message"] == "ksockd started"][0]
        assert started["component"] == "ksockd" and started["level"] == "info"
        assert started["context"]["pid"] == k.p.pid
        assert any(r["message"] == "stopping on SIGTERM" for r in records)
        assert records[-1]["message"] == "ksockd stopped"


@t.test
def sigint_stops_cleanly():
    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(d, {"log": {"sinks": [{"type": "console", "stream": "stdout"}]}})
        with Daemon(cfg) as k:
            line = k.p.stdout.readline()
            assert "ksockd started" in line, line
            rc, out, _ = k.stop(signal.SIGINT)
        assert rc == 0
        assert "stopping on SIGINT" in out


@t.test
def sighup_reopens_the_log_file_for_logrotate():
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "ksockd.log")
        cfg = write_config(d, {"log": {"sinks": [
            {"type": "file", "path": log, "flush_interval": "10ms"}]}})
        with Daemon(cfg) as k:
            wait_for(lambda: "ksockd started" in read(log), what="start-up record")
            os.rename(log, log + ".1")  # what logrotate does
            k.p.send_signal(signal.SIGHUP)
            wait_for(lambda: "log sinks reloaded" in read(log), what="records in the new file")
            rc, _, _ = k.stop()
        assert rc == 0
        assert "ksockd started" in read(log + ".1")
        assert "ksockd started" not in read(log)
        assert "ksockd stopped" in read(log)


@t.test
def sighup_with_a_broken_config_keeps_running():
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "ksockd.log")
        cfg = write_config(d, {"log": {"sinks": [
            {"type": "file", "path": log, "flush_interval": "10ms"}]}})
        with Daemon(cfg) as k:
            wait_for(lambda: "ksockd started" in read(log), what="start-up record")
            write_config(d, '{"log": {"sinks": [}')  # broken on purpose
            k.p.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload failed" in read(log), what="reload failure record")
            assert k.p.poll() is None, "ksockd died on a bad reload"
            rc, _, _ = k.stop()
        assert rc == 0
        assert "syntax error" in read(log)


def check_config(text_or_obj):
    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(d, text_or_obj)
        r = subprocess.run([KSOCKD, "--check-config", cfg], capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stdout, r.stderr, cfg


@t.test
def check_config_accepts_a_valid_file():
    rc, out, err, cfg = check_config({"log": {"level": "debug", "sinks": [
        {"type": "console"}, {"type": "file", "path": "/tmp/never-created-by-check.log"}]}})
    assert rc == 0, err
    assert "configuration is valid" in out
    assert not os.path.exists("/tmp/never-created-by-check.log"), "check-config ran plugin code"


@t.test
def check_config_rejects_with_exit_2():
    cases = [
        ('{"log": {"level": "info",}}', ":1:26: syntax error"),
        ({"lg": {}}, 'key "lg": unknown key'),
        ({"log": {"sinks": [{"type": "file"}]}}, 'logsink "file": key "path": missing'),
        ({"log": {"sinks": [{"type": "file", "path": 3}]}}, 'key "path": expected a string'),
        ({"log": {"sinks": [{"type": "file", "path": "/tmp/x", "buffer_size": "lots"}]}},
         'key "buffer_size": "lots" is not a size'),
        ({"log": {"sinks": [{"type": "nope"}]}}, 'no logsink plugin named "nope"'),
    ]
    for cfg, want in cases:
        rc, out, err, path = check_config(cfg)
        assert rc == 2, (cfg, rc, err)
        assert want in err, (want, err)
        assert "configuration is valid" not in out


@t.test
def unopenable_log_file_stops_startup():
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "no-such-dir", "ksockd.log")
        cfg = write_config(d, {"log": {"sinks": [{"type": "file", "path": bad}]}})
        r = subprocess.run([KSOCKD, "--config", cfg], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.returncode
        assert bad in r.stderr, r.stderr
        assert "ksockd started" not in r.stderr + r.stdout


@t.test
def list_and_describe_plugins():
    r = subprocess.run([KSOCKD, "--list-plugins"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    rows = {tuple(line.split()[:2]) for line in r.stdout.splitlines()[1:]}
    for plugin in [("logsink", "console"), ("logsink", "file"), ("logsink", "syslog"),
                   ("logsink", "http")]:
        assert plugin in rows, (plugin, r.stdout)
    r = subprocess.run([KSOCKD, "--describe-plugin", "logsink:file"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "path" in r.stdout and "(required)" in r.stdout and "buffer_size" in r.stdout
    r = subprocess.run([KSOCKD, "--describe-plugin", "nosuch"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "nosuch" in r.stderr


@t.test
def embedded_kafka_starts_in_memory_and_says_so():
    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(d, {"kafka": {"bootstrap.servers": "embedded"},
                               "log": {"sinks": [{"type": "console", "stream": "stdout"}]}})
        with Daemon(cfg) as k:
            lines = [k.p.stdout.readline() for _ in range(3)]
            assert any("WARN" in ln and "data lives in memory only" in ln for ln in lines), lines
            assert any("ksockd started" in ln for ln in lines), lines
            rc, _, _ = k.stop()
        assert rc == 0


@t.test
def bad_kafka_section_stops_startup():
    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(d, '{"kafka": {"bootstrap.servers": "embedded",\n'
                              '  "no.such.property": "1"}}')
        r = subprocess.run([KSOCKD, "--config", cfg], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "no.such.property" in r.stderr and ":2:" in r.stderr, r.stderr
        assert "ksockd started" not in r.stderr + r.stdout
        # A password inline in the config is refused by --check-config too.
        cfg = write_config(d, {"kafka": {"bootstrap.servers": "embedded",
                                         "sasl.password": "hunter2"}})
        r = subprocess.run([KSOCKD, "--check-config", cfg], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and "sasl.password" in r.stderr, r.stderr
        assert "hunter2" not in r.stderr


@t.test
def version_and_usage():
    r = subprocess.run([KSOCKD, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("ksockd ")
    r = subprocess.run([KSOCKD], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr


t.run()
