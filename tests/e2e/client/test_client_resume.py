#!/usr/bin/env python3
"""The client API's subscriptions resume by themselves (include/ksock/ws.h, docs/websocket.md):
ws_resume_client (ksock_ws_subscribe with reconnection on) reads a 3-partition topic of the run's
real broker (KSOCK_KAFKA_BOOTSTRAP) through ksockd while a producer (confluent-kafka, librdkafka's
Python binding) keeps writing, and ksockd is killed with SIGKILL and started again on the same
port, twice. Every record must arrive exactly once, in offset order per partition, with no gap.

    test_client_resume.py KSOCKD WS_RESUME_CLIENT [TEST_NAME...]
"""
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD, CLIENT = sys.argv[1], sys.argv[2]
HAVE = testvenv.need("confluent_kafka")  # may run this file again under the venv: argv intact
sys.argv = [sys.argv[0]] + sys.argv[2:]  # Tap reads test names from argv[2:]
if HAVE:
    import confluent_kafka  # noqa: E402
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
t = Tap()


def need_broker():
    if not HAVE:
        t.skip("python confluent-kafka not available (tools/setup --test)")
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset; ./tools/test starts one)")


def create_topic(partitions):
    name = f"client.resume.{uuid.uuid4().hex[:10]}"
    a = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for f in a.create_topics([NewTopic(name, num_partitions=partitions,
                                       replication_factor=1)]).values():
        f.result(30)
    return name


def ksockd(port):
    cfg = {
        "kafka": {"bootstrap.servers": BOOTSTRAP},
        "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
        "auth": {"plugin": "none"},
        "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
    }
    return KsockdProc(KSOCKD, cfg, ready="listening for WebSocket clients").__enter__()


def crash(k):
    k.p.kill()
    k.p.wait(timeout=30)
    k.err.close()
    k.dir.cleanup()


class Producer(threading.Thread):
    """Writes n records "m-<i>" to partition i % partitions at about `rate` per second."""

    def __init__(self, topic, n, partitions, rate):
        super().__init__(daemon=True)
        self.topic, self.n, self.partitions, self.rate = topic, n, partitions, rate
        self.error = None

    def run(self):
        try:
            p = confluent_kafka.Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 1})
            for i in range(self.n):
                p.produce(self.topic, value=f"m-{i}".encode(), partition=i % self.partitions)
                p.poll(0)
                time.sleep(1.0 / self.rate)
            assert p.flush(30) == 0, "records not delivered"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def resume(serializer):
    need_broker()
    partitions, n = 3, 3000  # 15 s at 200/s: still flowing at the second kill under ASan
    topic = create_topic(partitions)
    port = free_port()
    k = ksockd(port)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        c = subprocess.Popen([CLIENT, f"ws://127.0.0.1:{port}/", topic, str(n), serializer],
                             stdout=out, stderr=err)
        def subscribed(times):
            """Wait until the client has been subscribed `times` times: each kill must come
            while it reads (a sanitizer build's client and ksockd take seconds to start)."""
            end = time.monotonic() + 60
            while time.monotonic() < end and c.poll() is None:
                err.seek(0)
                if err.read().count(b"subscribed") >= times:
                    return
                time.sleep(0.05)
        subscribed(1)
        prod = Producer(topic, n, partitions, rate=200)
        prod.start()
        try:
            for i in range(2):  # twice: a resume after a resume
                subscribed(i + 1)
                time.sleep(1.5)
                crash(k)
                time.sleep(0.5)  # records keep coming while nobody serves the client
                k = ksockd(port)
            rc = c.wait(timeout=90)
        finally:
            if c.poll() is None:
                c.kill()
            k.__exit__(None, None, None)
        prod.join(30)
        assert prod.error is None, prod.error
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().splitlines()
        log = err.read().decode()
    assert rc == 0, f"client exit {rc}:\n{log}"
    assert log.count("reconnected") >= 2, "the client did not reconnect twice:\n" + log
    got = {}
    for line in lines:
        part, off, value = line.split(" ", 2)
        got.setdefault(int(part), []).append((int(off), value))
    assert len(lines) == n, f"{len(lines)} records for {n} produced"
    for part in range(partitions):
        recs = got.get(part, [])
        offs = [o for o, _ in recs]
        assert offs == list(range(len(offs))), f"partition {part}: offsets not 0..N once: {offs}"
        want = [f"m-{i}" for i in range(part, n, partitions)]
        assert [v for _, v in recs] == want, f"partition {part}: values differ from produced"


@t.test
def resume_json_after_two_kills():
    resume("json")


@t.test
def resume_protobuf_after_two_kills():
    resume("protobuf")


@t.test
def bad_input_refused():
    r = subprocess.run([CLIENT, "--bad-input"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "not ok" not in r.stdout, r.stdout + r.stderr
    assert r.stdout.count("\nok ") + r.stdout.startswith("ok ") >= 13, r.stdout


t.run()
