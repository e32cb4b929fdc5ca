#!/usr/bin/env python3
"""ksock-bench, the load generator (tools/bench/, docs/benchmarks.md Fan-out), against a real
ksockd: small runs of each mode, checked on the figures it reports. What matters here is that
the generator counts right (every subscriber got every record, every publish acked) and says
so when something fails; speed is measured by tools/bench/bench_fanout.sh, never here.

The fan-out, idle and publish cases need the run's real broker (KSOCK_KAFKA_BOOTSTRAP) and skip
without it; usage and refused-upgrade cases run anywhere.

    test_ksock_bench.py KSOCKD KSOCK_BENCH [TEST_NAME...]
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD, BENCH = sys.argv[1], sys.argv.pop(2)
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
t = Tap()


class Ksockd(KsockdProc):
    def __init__(self, extra=None, ws_extra=None):
        self.port = free_port()
        cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP or "embedded"},
            "websocket": dict({"listeners": [{"address": "127.0.0.1", "port": self.port}]},
                              **(ws_extra or {})),
            "auth": {"plugin": "none"},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
        }
        cfg.update(extra or {})
        super().__init__(KSOCKD, cfg, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"


def bench(*args, timeout=120):
    """Runs ksock-bench; returns (exit status, the JSON line's figures, all output)."""
    p = subprocess.run([BENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    return p.returncode, (json.loads(lines[-1]) if lines else None), out


def need_broker():
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset)")


@t.test
def fanout_every_subscriber_gets_every_record():
    """10 subscribers x 1,000 records, json then msgpack: nothing missing, repeated or out of
    order, and the latency and CPU figures are there. Needs subscribe support in ksockd."""
    need_broker()
    for fmt in ("json", "msgpack"):
        with Ksockd() as k:
            rc, r, out = bench("fanout", "--url", k.url, "--format", fmt, "--subscribers", 10,
                               "--records", 1000, "--server-pid", k.p.pid, "--timeout", 20)
            assert rc == 0 and r is not None, out
            assert r["subscribe_refused"] == 0 and r["open"] == 10, out
            assert r["produced"] == 1000, out
            assert (r["expected"], r["received"]) == (10000, 10000), out
            assert r["missing"] == 0 and r["duplicates"] == 0 and r["gaps"] == 0, out
            assert r["incomplete_subscribers"] == 0 and r["bad_frames"] == 0, out
            assert r["deliveries"] == 10000 and r["deliveries_per_s"] > 0, out
            assert 0 < r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_max_us"], out
            assert r["server_cpu_s"] >= 0 and r["client_cpu_s"] > 0, out


@t.test
def dropped_records_are_reported():
    """A server that drops records for slow subscribers (slow_client drop, 16-frame send
    queues) and a generator that reads slowly (20 ms pauses): the -32 notices are counted, the
    offset jumps are gaps, the records never received are missing, and the exit status says so."""
    need_broker()
    with Ksockd(extra={"bridge": {"slow_client": "drop"}},
                ws_extra={"send_queue_max_frames": 16}) as k:
        rc, r, out = bench("fanout", "--url", k.url, "--subscribers", 5, "--records", 5000,
                           "--coalesce-us", 20000, "--timeout", 3)
        assert rc == 1 and r is not None and r["ok"] == 0, out
        assert r["produced"] == 5000 and r["expected"] == 25000, out
        assert r["skipped_notices"] > 0 and r["gaps"] > 0, out
        assert r["missing"] >= r["gaps"] and r["received"] == 25000 - r["missing"], out
        assert r["duplicates"] == 0 and r["closed"] == 0, out


@t.test
def idle_connections_subscribe():
    """50 subscribed idle connections: all answered `subscribed`, the server's RSS read."""
    need_broker()
    with Ksockd() as k:
        rc, r, out = bench("idle", "--url", k.url, "--subscribers", 50, "--settle", 0.2,
                           "--server-pid", k.p.pid)
        assert rc == 0 and r is not None, out
        assert r["open"] == 50 and r["subscribe_refused"] == 0, out
        assert r["rss_after_kib"] > 0, out


@t.test
def publish_every_publish_acked():
    """2 connections x 16 in flight, 2,000 publishes: all acked, and the raw baseline ran."""
    need_broker()
    with Ksockd() as k:
        rc, r, out = bench("publish", "--url", k.url, "--connections", 2, "--window", 16,
                           "--records", 2000, "--server-pid", k.p.pid)
        assert rc == 0 and r is not None, out
        assert r["acks"] == 2000 and r["errors"] == 0, out
        assert r["raw_per_s"] > 0 and r["ratio"] > 0, out
    assert k.stats()["published"] == 3000, k.log()[-2000:]  # 1,000 warm-up + 2,000


@t.test
def refused_upgrade_is_reported():
    """A subprotocol the server does not serve: every connection fails, exit status 1."""
    with Ksockd(extra={"serializers": {"json": {}}}) as k:
        rc, r, out = bench("idle", "--url", k.url, "--format", "msgpack", "--subscribers", 5,
                           "--no-subscribe", "--settle", 0)
        assert rc == 1 and r is not None, out
        assert r["open"] == 0 and r["connect_failed"] == 5 and r["ok"] == 0, out
        assert "upgrade refused: HTTP/1.1 400" in out, out


@t.test
def nothing_listening_is_reported():
    """No server: every connection fails and the run says so (fanout and publish too when there
    is a broker for their producer)."""
    modes = [("idle", "--no-subscribe", "--settle", 0)]
    if BOOTSTRAP:
        modes += [("fanout",), ("publish",)]
    for mode in modes:
        rc, r, out = bench(*mode, "--url", f"ws://127.0.0.1:{free_port()}/", "--subscribers", 3)
        assert rc == 1 and r["ok"] == 0, (mode, out)
        assert "Connection refused" in out, out
        if mode[0] == "publish":  # its warm-up connection is the one that fails
            assert "warm-up: could not connect" in out, out
        else:
            assert r["connect_failed"] == 3, (mode, out)


@t.test
def bad_arguments_exit_2():
    url = "ws://127.0.0.1:1/"
    for args in ([], ["fanout"], ["nope", "--url", url], ["idle", "--url", "http://x/"],
                 ["idle", "--url", url, "--threads", "3"],
                 ["idle", "--url", url, "--subscribers", "10x"],
                 ["idle", "--url", url, "--value-size", "10"],
                 ["idle", "--url", url, "--topic", "bad topic"],
                 ["idle", "--url", url, "--format", "cbor"]):
        rc, r, out = bench(*args)
        assert rc == 2 and "usage:" in out, (args, out)


t.run()
