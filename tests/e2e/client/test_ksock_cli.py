#!/usr/bin/env python3
"""`ksock publish` and `ksock tail` (docs/websocket.md) against ksockd on the run's real broker
(KSOCK_KAFKA_BOOTSTRAP): what publish writes is what Kafka has (read back with kcat) and what tail
prints; refusals exit 2 with the code; 1000 lines of stdin get 1000 acks; tail --reconnect
misses nothing across a ksockd killed with SIGKILL and started again. Tokens are signed with
PyJWT, topics made with confluent-kafka's AdminClient.

    test_ksock_cli.py KSOCKD KSOCK [TEST_NAME...]
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD, KSOCK = sys.argv[1], sys.argv[2]
HAVE = testvenv.need("confluent_kafka", "jwt")  # may run this file again under the venv
sys.argv = [sys.argv[0]] + sys.argv[2:]  # Tap reads test names from argv[2:]
if HAVE:
    import jwt  # noqa: E402
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SECRET = "ksock-cli-test-secret-of-at-least-32-bytes"
t = Tap()


def need_broker():
    if not HAVE:
        t.skip("python confluent-kafka/PyJWT not available (tools/setup --test)")
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset; ./tools/test starts one)")
    if shutil.which("kcat") is None:
        t.skip("kcat not installed")


def create_topic(partitions=1):
    name = f"cli.{uuid.uuid4().hex[:10]}"
    a = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for f in a.create_topics([NewTopic(name, num_partitions=partitions,
                                       replication_factor=1)]).values():
        f.result(30)
    return name


def token(publish=None, subscribe=None):
    now = int(time.time())
    claims = {"sub": "cli", "iat": now, "exp": now + 600, "ksock": {}}
    if publish is not None:
        claims["ksock"]["publish"] = publish
    if subscribe is not None:
        claims["ksock"]["subscribe"] = subscribe
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Ksockd(KsockdProc):
    def __init__(self, auth=None, port=None, kafka=None):
        self.port = port or free_port()
        cfg = {
            "kafka": dict({"bootstrap.servers": BOOTSTRAP}, **(kafka or {})),
            "websocket": {"listeners": [{"address": "127.0.0.1", "port": self.port}]},
            "auth": auth or {"plugin": "none"},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
        }
        super().__init__(KSOCKD, cfg, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def crash(self):
        self.p.kill()
        self.p.wait(timeout=30)
        self.err.close()
        self.dir.cleanup()


def ksock(*args, input=None, timeout=60):
    return subprocess.run([KSOCK, *args], input=input, capture_output=True, timeout=timeout)


def json_lines(b):
    return [json.loads(x) for x in b.decode().splitlines() if x.strip()]


def kcat_all(topic, fmt="%p %o %k|%s|%h\n"):
    r = subprocess.run(["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-o", "beginning", "-e",
                        "-q", "-f", fmt], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@t.test
def publish_key_headers_then_tail_from_earliest():
    need_broker()
    topic = create_topic()
    with Ksockd() as k:
        r = ksock("publish", k.url, "--topic", topic, "--key", "user-17", "--header", "trace=abc",
                  "--header", "trace=def", "--header", "empty=", "hello world")
        assert r.returncode == 0, r.stderr
        assert json_lines(r.stdout) == [{"topic": topic, "partition": 0, "offset": 0}]
        r = ksock("publish", k.url, "--topic", topic, "--serializer", "msgpack",
                  b"\xff\x00bin".replace(b"\x00", b"\x01"))
        assert r.returncode == 0, r.stderr
        assert json_lines(r.stdout) == [{"topic": topic, "partition": 0, "offset": 1}]
        assert kcat_all(topic) == (b"0 0 user-17|hello world|trace=abc,trace=def,empty=\n"
                                   b"0 1 |\xff\x01bin|\n")
        r = ksock("tail", k.url, "--topic", topic, "--from", "earliest", "--count", "2")
        assert r.returncode == 0, r.stderr
        recs = json_lines(r.stdout)
        assert len(recs) == 2, recs
        ts = recs[0].pop("timestamp")
        assert abs(ts - time.time() * 1000) < 120000, ts
        assert recs[0] == {"topic": topic, "partition": 0, "offset": 0, "key": "user-17",
                           "value": "hello world",
                           "headers": [{"key": "trace", "value": "abc"},
                                       {"key": "trace", "value": "def"},
                                       {"key": "empty", "value": ""}]}, recs[0]
        recs[1].pop("timestamp")
        assert recs[1] == {"topic": topic, "partition": 0, "offset": 1, "key": None,
                           "value_b64": base64.b64encode(b"\xff\x01bin").decode(),
                           "headers": []}, recs[1]
        assert b'"event": "subscribed"' in r.stderr, r.stderr


@t.test
def tail_from_offsets_and_timestamp():
    need_broker()
    topic = create_topic(partitions=2)
    with Ksockd() as k:
        for p in (0, 1):
            for i in range(3):
                r = ksock("publish", k.url, "--topic", topic, "--partition", str(p), f"p{p}-{i}")
                assert r.returncode == 0, r.stderr
        r = ksock("tail", k.url, "--topic", topic, "--from", "0:2,1:1", "--count", "3")
        assert r.returncode == 0, r.stderr
        got = sorted((x["partition"], x["offset"], x["value"]) for x in json_lines(r.stdout))
        assert got == [(0, 2, "p0-2"), (1, 1, "p1-1"), (1, 2, "p1-2")], got
        r = ksock("tail", k.url, "--topic", topic, "--from", "@0", "--count", "6")
        assert r.returncode == 0, r.stderr
        assert len(json_lines(r.stdout)) == 6


@t.test
def publish_forbidden_exits_2_with_the_code():
    need_broker()
    topic = create_topic()
    with Ksockd(auth={"plugin": "jwt", "secret": SECRET}) as k:
        tok = token(publish=["other.*"], subscribe=["other.*"])
        r = ksock("publish", k.url, "--topic", topic, "--token", tok, "v")
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert b"KSOCK_E_FORBIDDEN (-16)" in r.stderr, r.stderr
        out = json_lines(r.stdout)
        assert len(out) == 1 and out[0]["error_code"] == -16, out
        assert out[0]["error"] == "KSOCK_E_FORBIDDEN", out
        r = ksock("tail", k.url, "--topic", topic, "--token", tok, timeout=30)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert b"subscribe refused: KSOCK_E_FORBIDDEN (-16)" in r.stderr, r.stderr
        ok = token(publish=[topic])
        r = ksock("publish", k.url, "--topic", topic, "--token", ok, "v")
        assert r.returncode == 0, r.stderr
    assert kcat_all(topic, "%s\n") == b"v\n"


@t.test
def publish_stdin_1000_lines_1000_acks():
    need_broker()
    topic = create_topic(partitions=3)
    lines = [f"line-{i}" for i in range(1000)]
    with Ksockd() as k:
        r = ksock("publish", k.url, "--topic", topic, "--serializer", "protobuf", "-",
                  input=("\n".join(lines) + "\n").encode())
        assert r.returncode == 0, r.stderr
        acks = json_lines(r.stdout)
        assert len(acks) == 1000, len(acks)
        assert len({(a["partition"], a["offset"]) for a in acks}) == 1000
        assert all(a["topic"] == topic for a in acks)
    got = kcat_all(topic, "%s\n").decode().split()
    assert sorted(got) == sorted(lines), (len(got), got[:5])


@t.test
def publish_refusal_among_stdin_lines_exits_2():
    need_broker()
    topic = create_topic()
    # The producer's record limit (docs/protocol.md, Sizes) set low: the long line gets -18.
    with Ksockd(kafka={"message.max.bytes": "2000"}) as k:
        r = ksock("publish", k.url, "--topic", topic, "-",
                  input=("a\n" + "x" * 5000 + "\nb\n").encode())
    assert r.returncode == 2, (r.returncode, r.stderr)
    out = json_lines(r.stdout)
    assert sorted(o["offset"] for o in out if "offset" in o) == [0, 1], out
    errs = [o for o in out if "error_code" in o]
    assert len(errs) == 1 and errs[0]["error"] == "KSOCK_E_TOOBIG", out
    assert b"publish refused: KSOCK_E_TOOBIG (-18)" in r.stderr, r.stderr
    assert kcat_all(topic, "%s\n") == b"a\nb\n"


@t.test
def tail_reconnect_misses_nothing_across_a_kill():
    need_broker()
    topic = create_topic(partitions=2)
    port = free_port()

    def produce(prefix, n):
        data = "".join(f"{prefix}-{i}\n" for i in range(n)).encode()
        r = subprocess.run(["kcat", "-b", BOOTSTRAP, "-P", "-t", topic, "-p", "-1"],
                           input=data, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr

    k = Ksockd(port=port).__enter__()
    errf = tempfile.TemporaryFile()
    tail = subprocess.Popen([KSOCK, "tail", k.url, "--topic", topic, "--from", "earliest",
                             "--count", "150", "--reconnect", "--retry-delay", "100",
                             "--no-exponential", "--no-jitter", "--max-retries", "-1"],
                            stdout=subprocess.PIPE, stderr=errf)
    try:
        # the kill must come while the tail reads: wait until it has subscribed (a sanitizer
        # build's ksock takes seconds to start)
        end = time.monotonic() + 60
        while time.monotonic() < end and tail.poll() is None:
            errf.seek(0)
            if b'"event": "subscribed"' in errf.read():
                break
            time.sleep(0.05)
        produce("a", 50)
        time.sleep(1.5)
        k.crash()
        produce("b", 50)  # while ksockd is down
        k = Ksockd(port=port).__enter__()
        produce("c", 50)
        out, _ = tail.communicate(timeout=60)
        errf.seek(0)
        err = errf.read()
    finally:
        if tail.poll() is None:
            tail.kill()
        k.__exit__(None, None, None)
        errf.close()
    assert tail.returncode == 0, (tail.returncode, err.decode()[-3000:])
    assert b'"event": "reconnected"' in err, err
    recs = json_lines(out)
    values = [r["value"] for r in recs]
    assert sorted(values) == sorted([f"{p}-{i}" for p in "abc" for i in range(50)]), values
    for part in (0, 1):
        offs = [r["offset"] for r in recs if r["partition"] == part]
        assert offs == list(range(len(offs))), (part, offs)


@t.test
def tail_latest_until_sigint_exits_0():
    need_broker()
    topic = create_topic()
    with Ksockd() as k:
        r = ksock("publish", k.url, "--topic", topic, "before")
        assert r.returncode == 0, r.stderr
        tail = subprocess.Popen([KSOCK, "tail", k.url, "--topic", topic, "--serializer",
                                 "msgpack"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            err = b""
            while b'"event": "subscribed"' not in err:  # latest starts after "before"
                line = tail.stderr.readline()
                assert line, "tail ended before subscribing"
                err += line
            r = ksock("publish", k.url, "--topic", topic, "after")
            assert r.returncode == 0, r.stderr
            rec = json.loads(tail.stdout.readline())
            tail.send_signal(signal.SIGINT)
            rest, err2 = tail.communicate(timeout=30)
        finally:
            if tail.poll() is None:
                tail.kill()
    assert tail.returncode == 0, (tail.returncode, err + err2)
    assert (rec["offset"], rec["value"]) == (1, "after"), rec
    assert rest == b"", rest


@t.test
def bad_arguments_exit_2():
    cases = [
        (["tail", "ws://127.0.0.1:9/"], b"--topic is required"),
        (["tail", "--topic", "t", "--from", "1:x"], b"--from: expected"),
        (["tail", "--topic", "t", "--from", "@-5"], b"--from: expected"),
        (["tail", "--topic", "t", "--count", "0"], b"--count: expected"),
        (["publish", "--topic", "t"], b"VALUE (or - for stdin) is required"),
        (["publish", "--topic", "t", "--header", "novalue", "v"], b"--header: expected"),
        (["publish", "--topic", "t", "--partition", "-1", "v"], b"usage"),
        (["publish", "--topic", "t", "a", "b"], b"unexpected arguments"),
        (["tail", "--topic", "t", "--key", "k"], b"usage"),
    ]
    for args, msg in cases:
        r = ksock(*args, timeout=10)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert msg in r.stderr, (args, r.stderr)


@t.test
def help_names_the_default_url():
    # The default is ./tools/run's listener (examples/ksockd.json); not connected to here, as
    # tests use only ports they picked.
    with open(os.path.join(os.environ["KSOCK_SOURCE_ROOT"], "examples", "ksockd.json")) as f:
        cfg = f.read()
    assert '"port": 8080, "path": "/ws"' in cfg, "examples/ksockd.json moved: update DEFAULT_URL"
    for verb in ("tail", "publish"):
        r = ksock(verb, "--help")
        assert r.returncode == 0 and b"defaults to ws://127.0.0.1:8080/ws" in r.stdout, r.stdout


t.run()
