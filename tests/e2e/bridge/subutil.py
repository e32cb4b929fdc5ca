"""Helpers for the subscription end-to-end tests (test_subscribe*.py), written from
docs/protocol.md (Subscriptions) the way an outside client writer would: clients are Python
`websockets` with `msgpack` and `protobuf` (google.protobuf, its classes made at run time from
the shipped ksock.proto), records are produced with kcat or confluent-kafka (librdkafka's own
Python binding), topics made with confluent-kafka's AdminClient, records deleted with the Java
Admin of the broker's own jars (KafkaAdmin.java beside this file).

Every envelope a client receives is normalised to one dict shape whatever the format:
  key / value: bytes, absent from the dict for a Kafka null;
  headers: list of (key, bytes or None);  offsets: list of (partition, offset).
"""
import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

HAVE = testvenv.need("websockets", "msgpack", "google.protobuf", "confluent_kafka", "jwt")
if HAVE:
    import confluent_kafka  # noqa: E402
    import jwt  # noqa: E402
    import msgpack  # noqa: E402
    import websockets  # noqa: E402
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # noqa: E402
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

BOOTSTRAP = os.environ.get("KSOCK_KAFKA_BOOTSTRAP")
SOURCE_ROOT = os.environ.get("KSOCK_SOURCE_ROOT",
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
SECRET = "subscribe-test-secret-of-at-least-32-bytes"
FORMATS = ("json", "msgpack", "protobuf")


def need_broker(t):
    """Every case here reads from the real broker: skip (not fail) without it."""
    if not HAVE:
        t.skip("python websockets/msgpack/protobuf/confluent-kafka missing (tools/setup --test)")
    if not BOOTSTRAP:
        t.skip("no broker (KSOCK_KAFKA_BOOTSTRAP unset; ./tools/test starts one)")
    if shutil.which("kcat") is None:
        t.skip("kcat not installed")


def unique(prefix):
    return f"sub.{prefix}.{uuid.uuid4().hex[:10]}"


# ---- ksockd ---------------------------------------------------------------------------------


class Ksockd(KsockdProc):
    """ksockd on the run's broker, a free loopback port, json logs at info; `bridge` and
    `websocket` entries are merged into the config. Anonymous (auth none) unless `auth`."""

    def __init__(self, ksockd, bridge=None, websocket=None, auth=None, port=None, env=None):
        self.port = port or free_port()
        ws = {"listeners": [{"address": "127.0.0.1", "port": self.port}]}
        ws.update(websocket or {})
        cfg = {
            "kafka": {"bootstrap.servers": BOOTSTRAP},
            "websocket": ws,
            "auth": auth or {"plugin": "none"},
            "log": {"level": "info", "sinks": [{"type": "console", "format": "json"}]},
        }
        if bridge:
            cfg["bridge"] = bridge
        super().__init__(ksockd, cfg, env=env, ready="listening for WebSocket clients")
        self.url = f"ws://127.0.0.1:{self.port}/"

    crashed = False

    def crash(self):
        """kill -9, as a crash: leaving `with` then checks no exit status."""
        self.crashed = True
        self.p.kill()
        self.p.wait(timeout=30)

    def __exit__(self, exc_type, *exc):
        try:
            if self.crashed and exc_type is None:
                return super().__exit__(AssertionError, None, None)
            return super().__exit__(exc_type, *exc)
        finally:
            # the assertion keeps only the log's tail; the sanitizer's frames in ksock code
            # (not librdkafka's unsymbolised ones) are what tells where
            report = self.sanitizer_report()
            if report:
                for line in self.log()[self.log().find("Sanitizer") - 80:].splitlines():
                    if "librdkafka.so" not in line and not line.startswith("{"):
                        print("# " + line)

    def sanitizer_report(self):
        log = self.log()
        return log[log.find("Sanitizer"):][:4000] if "Sanitizer" in log else None


def token(sub="alice", publish=None, subscribe=None, ttl=600):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl, "ksock": {}}
    if publish is not None:
        claims["ksock"]["publish"] = publish
    if subscribe is not None:
        claims["ksock"]["subscribe"] = subscribe
    return jwt.encode(claims, SECRET, algorithm="HS256")


JWT_AUTH = {"plugin": "jwt", "secret": SECRET}


# ---- Kafka: topics and records ------------------------------------------------------------------


def admin():
    return AdminClient({"bootstrap.servers": BOOTSTRAP})


def create_topic(name, partitions=1, config=None):
    a = admin()  # kept: the futures fail when their client is destroyed
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], operation_timeout=30)
    fs[name].result(timeout=30)
    wait_partitions(name, partitions)
    return name


def wait_partitions(name, n, timeout=30):
    end = time.monotonic() + timeout
    a = admin()
    while True:
        md = a.list_topics(name, timeout=10)
        tp = md.topics.get(name)
        if tp is not None and tp.error is None and len(tp.partitions) == n and all(
                p.leader >= 0 for p in tp.partitions.values()):
            return
        if time.monotonic() > end:
            raise AssertionError(f"topic {name} does not have {n} partitions with leaders")
        time.sleep(0.2)


def add_partitions(name, total):
    a = admin()
    fs = a.create_partitions([NewPartitions(name, total)], operation_timeout=30)
    fs[name].result(timeout=30)
    wait_partitions(name, total)


def watermarks(topic, partition):
    c = confluent_kafka.Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "e2e-wm"})
    try:
        return c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, partition), timeout=20)
    finally:
        c.close()


def kcat_produce(topic, lines, partition=None, key_delim=None, fixed_key=None, headers=(),
                 null_empty=False):
    """Produce `lines` (bytes, one record per line) with kcat -P; -H per header ("k" alone is
    a null value), -K for per-line keys, -k for one key, -Z for empty values as null."""
    argv = ["kcat", "-P", "-b", BOOTSTRAP, "-t", topic, "-X", "linger.ms=0"]
    if partition is not None:
        argv += ["-p", str(partition)]
    if key_delim is not None:
        argv += ["-K", key_delim]
    if fixed_key is not None:
        argv += ["-k", fixed_key]
    for h in headers:
        argv += ["-H", h]
    if null_empty:
        argv.append("-Z")
    r = subprocess.run(argv, input=b"".join(x + b"\n" for x in lines), capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def kcat_read(topic, partition, offset, count):
    """(offset, key, value) as kcat reads them back, for comparisons."""
    r = subprocess.run(["kcat", "-C", "-b", BOOTSTRAP, "-t", topic, "-p", str(partition), "-o",
                        str(offset), "-c", str(count), "-e", "-q", "-J"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


class CheckedProducer:
    """confluent-kafka's Producer whose flush() also fails on a record Kafka refused (flush
    counts only what is still queued; a refused record is gone from the queue too)."""

    def __init__(self, conf):
        self.p = confluent_kafka.Producer(conf)
        self.errors = []

    def _delivered(self, err, msg):
        if err is not None:
            self.errors.append(f"{msg.topic()} [{msg.partition()}]: {err}")

    def produce(self, *args, **kw):
        kw.setdefault("on_delivery", self._delivered)
        self.p.produce(*args, **kw)

    def poll(self, timeout):
        return self.p.poll(timeout)

    def flush(self, timeout):
        left = self.p.flush(timeout)
        assert not self.errors, f"{len(self.errors)} records refused: {self.errors[:3]}"
        return left


def producer(**extra):
    conf = {"bootstrap.servers": BOOTSTRAP, "linger.ms": 0, "enable.idempotence": True}
    conf.update(extra)
    return CheckedProducer(conf)


def produce_many(topic, n, partitions=1, value=lambda i: b"v%d" % i, flush=True):
    """n records spread round robin over the partitions, keyless, by confluent-kafka."""
    p = producer(**{"linger.ms": 5})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value(i), partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    if flush:
        assert p.flush(60) == 0, "records not delivered"
    return p


def delete_records(topic, partition, before):
    """Kafka's DeleteRecords (the log start moves to `before`) through the Java Admin client of
    the broker's jars: confluent-kafka 2.3 has no delete_records."""
    version = os.environ.get("KSOCK_KAFKA_VERSION", "4.4.0")
    libs = os.path.join(os.environ.get("KSOCK_CACHE", os.path.expanduser("~/.cache/ksock")),
                        f"kafka-{version}", "libs")
    java = os.environ.get("KSOCK_JAVA", "java")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "KafkaAdmin.java")
    r = subprocess.run([java, "-cp", os.path.join(libs, "*"), src, "delete-records", BOOTSTRAP,
                        topic, str(partition), str(before)], capture_output=True, text=True,
                       timeout=90)
    assert r.returncode == 0, (r.stdout, r.stderr)
    low, _ = watermarks(topic, partition)
    assert low == before, (low, before)


# ---- Envelopes in three formats ----------------------------------------------------------------

_PB = None


def _pb_class():
    """ksock.v1.Envelope from the shipped ksock.proto, parsed here (messages Header,
    PartitionOffset, Envelope and enums Op, Start) into a FileDescriptorProto: no protoc."""
    global _PB
    if _PB is not None:
        return _PB
    with open(os.path.join(SOURCE_ROOT, "plugins", "serializer_protobuf", "ksock.proto")) as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    fdp = descriptor_pb2.FileDescriptorProto(name="ksock_e2e.proto", package="ksock.v1",
                                             syntax="proto2")
    F = descriptor_pb2.FieldDescriptorProto
    scalars = {"string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "int32": F.TYPE_INT32,
               "int64": F.TYPE_INT64, "sint32": F.TYPE_SINT32}
    blocks = dict((m.group(2), (m.group(1), m.group(3)))
                  for m in re.finditer(r"^(enum|message)\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S))
    for name in ("Op", "Start"):
        e = fdp.enum_type.add(name=name)
        for vm in re.finditer(r"(\w+)\s*=\s*(\d+)\s*;", blocks[name][1]):
            e.value.add(name=vm.group(1), number=int(vm.group(2)))
    for name in ("Header", "PartitionOffset", "Envelope"):
        m = fdp.message_type.add(name=name)
        for fm in re.finditer(r"(optional|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)\s*;", blocks[name][1]):
            label, typ, fname, num = fm.groups()
            fd = m.field.add(name=fname, number=int(num),
                             label=F.LABEL_REPEATED if label == "repeated" else F.LABEL_OPTIONAL)
            if typ in scalars:
                fd.type = scalars[typ]
            elif blocks[typ][0] == "enum":
                fd.type, fd.type_name = F.TYPE_ENUM, ".ksock.v1." + typ
            else:
                fd.type, fd.type_name = F.TYPE_MESSAGE, ".ksock.v1." + typ
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    _PB = message_factory.GetMessageClass(pool.FindMessageTypeByName("ksock.v1.Envelope"))
    return _PB


def encode(fmt, env):
    """A client request (subscribe, unsubscribe, ping) in `fmt`; offsets as (p, o) pairs."""
    e = dict(env)
    if "offsets" in e:
        e["offsets"] = [{"partition": p, "offset": o} for p, o in e["offsets"]]
    if fmt == "json":
        return json.dumps(e)
    if fmt == "msgpack":
        return msgpack.packb(e, use_bin_type=True)
    m = _pb_class()()
    m.op = m.DESCRIPTOR.fields_by_name["op"].enum_type.values_by_name["OP_" + e.pop("op").upper()].number
    if "start" in e:
        m.start = m.DESCRIPTOR.fields_by_name["start"].enum_type.values_by_name[
            "START_" + e.pop("start").upper()].number
    for po in e.pop("offsets", []):
        m.offsets.add(partition=po["partition"], offset=po["offset"])
    for k, v in e.items():
        setattr(m, k, v)
    return m.SerializeToString()


def _json_bytes(d, name):
    if name in d:
        return d[name].encode("utf-8")
    if name + "_b64" in d:
        return base64.b64decode(d[name + "_b64"], validate=True)
    if name + "_json" in d:  # only on topics declared JSON; none are here
        raise AssertionError(f"unexpected {name}_json: {d}")
    return None


def decode(fmt, frame):
    """One received frame as the normalised dict (module doc)."""
    out = {}
    if fmt == "json":
        assert isinstance(frame, str), f"json frames are text: {frame!r}"
        d = json.loads(frame)
        for k, v in d.items():
            if v is None:
                continue
            if k in ("key", "key_b64", "key_json", "value", "value_b64", "value_json"):
                base = k.split("_")[0]
                out[base] = _json_bytes(d, base)
            elif k == "headers":
                out[k] = [(h["key"], _json_bytes(h, "value")) for h in v]
            elif k == "offsets":
                out[k] = [(o["partition"], o["offset"]) for o in v]
            else:
                out[k] = v
        return out
    assert isinstance(frame, bytes), f"{fmt} frames are binary: {frame!r}"
    if fmt == "msgpack":
        d = msgpack.unpackb(frame, raw=False)
        for k, v in d.items():
            if v is None:
                continue
            if k in ("key", "value"):
                out[k] = bytes(v) if isinstance(v, bytes) else v.encode()
            elif k == "headers":
                out[k] = [(h["key"], None if h.get("value") is None else bytes(h["value"])) for h in v]
            elif k == "offsets":
                out[k] = [(o["partition"], o["offset"]) for o in v]
            else:
                out[k] = v
        return out
    m = _pb_class()()
    m.ParseFromString(frame)
    for fd, v in m.ListFields():
        if fd.name == "op":
            out["op"] = fd.enum_type.values_by_number[v].name[3:].lower()
        elif fd.name == "start":
            out["start"] = fd.enum_type.values_by_number[v].name[6:].lower()
        elif fd.name == "headers":
            out["headers"] = [(h.key, h.value if h.HasField("value") else None) for h in v]
        elif fd.name == "offsets":
            out["offsets"] = [(o.partition, o.offset) for o in v]
        else:
            out[fd.name] = v
    return out


class Client:
    """One WebSocket client in one format. `async with Client(url, fmt) as c:`."""

    def __init__(self, url, fmt="json", tok=None, max_queue=1024, rcvbuf=None, **kw):
        self.url, self.fmt, self.tok = url, fmt, tok
        self.max_queue, self.rcvbuf, self.kw = max_queue, rcvbuf, kw
        self.ws = None
        self.aborted = False

    async def __aenter__(self):
        kw = dict(subprotocols=[f"ksock.v1.{self.fmt}"], max_queue=self.max_queue,
                  compression=None, open_timeout=30, close_timeout=5, max_size=None)
        kw.update(self.kw)
        if self.tok:
            kw["extra_headers"] = {"Authorization": f"Bearer {self.tok}"}
        if self.rcvbuf:
            # A small receive window before connecting, so a client that stops reading is
            # pushed back on by TCP after little data (the kernel would grow it to MBs).
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            s.setblocking(False)
            port = int(self.url.rsplit(":", 1)[1].strip("/"))
            await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
            kw["sock"] = s
        self.ws = await websockets.connect(self.url, **kw)
        assert self.ws.subprotocol == f"ksock.v1.{self.fmt}", self.ws.subprotocol
        return self

    async def __aexit__(self, *exc):
        if not self.aborted:
            await self.ws.close()

    def abort(self):
        """Drop the TCP connection without a close handshake (a client that just goes away).
        A clean close() cannot finish quickly when the library's queue is full: it stops
        reading at max_queue, so it never sees ksockd's close frame behind the records."""
        self.aborted = True
        self.ws.transport.abort()

    async def send(self, env):
        await self.ws.send(encode(self.fmt, env))

    async def recv(self, timeout=30):
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"nothing received within {timeout} s") from None
        return decode(self.fmt, frame)

    async def subscribe(self, topic, id="s1", timeout=30, replacing=False, expect="subscribed",
                        **start):
        """Send a subscribe and return the `subscribed` (or error) answering it. With
        `replacing`, records of the earlier subscription arriving before it are dropped
        (protocol.md, Subscribing twice); otherwise a record first is a failure
        ("`subscribed` always comes before the first `record`"). The answer's op must be
        `expect`."""
        await self.send(dict(op="subscribe", id=id, topic=topic, **start))
        end = time.monotonic() + timeout
        while True:
            e = await self.recv(max(0.1, end - time.monotonic()))
            if e["op"] == "record" and e["topic"] == topic and replacing:
                continue
            assert e["op"] != "record", f"a record before the answer to subscribe {id}: {e}"
            assert expect is None or e["op"] == expect, \
                f"subscribe {id} to {topic} {start}: {expect} expected, got {e}"
            return e

    async def records(self, n, timeout=30, skip_other=False):
        """The next n envelopes, which must be records."""
        out = []
        end = time.monotonic() + timeout
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(out)} of {n} records within {timeout} s")
            e = await self.recv(left)
            if e["op"] != "record":
                if skip_other:
                    continue
                raise AssertionError(f"not a record after {len(out)}: {e}")
            out.append(e)
        return out

    async def quiet(self, seconds):
        """Nothing arrives for `seconds` (asserted)."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame: {decode(self.fmt, frame)}")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def check_in_order(records, start, end=None):
    """Per partition: offsets exactly start[p], start[p]+1, ... (no gap, no duplicate), and up
    to end[p] (exclusive) when given. start/end: dict partition -> offset."""
    nxt = dict(start)
    for r in records:
        p = r["partition"]
        assert p in nxt, f"record of partition {p} not subscribed: {r}"
        assert r["offset"] == nxt[p], f"partition {p}: offset {r['offset']}, expected {nxt[p]}"
        nxt[p] += 1
    if end is not None:
        assert nxt == end, f"ended at {nxt}, expected {end}"
    return nxt


class FastSubscriber(asyncio.Protocol):
    """A msgpack subscriber for many-connection cases: websockets' sans-I/O ClientProtocol (the
    same library's handshake and framing) on a bare asyncio transport, which costs a few
    microseconds per frame where the asyncio client costs tens. Checks every record's offset
    against the next expected one per partition, and finishes after `n` records.

        s = await FastSubscriber.open(url, topic, n)   # connected and subscribed (latest)
        nxt = await s.done                               # {partition: next offset}
    """

    def __init__(self, url, topic, n):
        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri
        self.ws = ClientProtocol(parse_uri(url), subprotocols=[Subprotocol("ksock.v1.msgpack")],
                                 max_size=None)
        self.topic, self.n, self.got = topic, n, 0
        self.nxt = None
        loop = asyncio.get_running_loop()
        self.subscribed, self.done = loop.create_future(), loop.create_future()
        self.transport = None

    @classmethod
    async def open(cls, url, topic, n, timeout=45):
        s = cls(url, topic, n)
        host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        await asyncio.get_running_loop().create_connection(lambda: s, host, int(port))
        await asyncio.wait_for(s.subscribed, timeout)
        return s

    def _flush(self):
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _fail(self, why):
        for f in (self.subscribed, self.done):
            if not f.done():
                f.set_exception(AssertionError(why))
        self.transport.close()

    def connection_made(self, transport):
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data):
        from websockets.frames import Opcode
        from websockets.http11 import Response
        self.ws.receive_data(data)
        for ev in self.ws.events_received():
            if isinstance(ev, Response):
                if self.ws.handshake_exc is not None or self.ws.subprotocol != "ksock.v1.msgpack":
                    return self._fail(f"handshake: {self.ws.handshake_exc} {self.ws.subprotocol}")
                self.ws.send_binary(msgpack.packb({"op": "subscribe", "id": "f",
                                                   "topic": self.topic}))
            elif ev.opcode == Opcode.BINARY:
                self._envelope(msgpack.unpackb(ev.data))
            elif ev.opcode == Opcode.CLOSE:
                self._fail(f"closed by ksockd: {self.ws.close_rcvd} after {self.got} records")
            elif ev.opcode not in (Opcode.PING, Opcode.PONG):
                self._fail(f"unexpected frame {ev}")
        self._flush()

    def _envelope(self, e):
        if self.done.done():
            return
        if self.nxt is None:
            if e.get("op") != "subscribed" or e.get("id") != "f":
                return self._fail(f"not the answer to subscribe: {e}")
            self.nxt = {o["partition"]: o["offset"] for o in e["offsets"]}
            self.subscribed.set_result(dict(self.nxt))
            return
        p = e.get("partition")
        if e.get("op") != "record" or p not in self.nxt or e.get("offset") != self.nxt[p]:
            return self._fail(f"after {self.got} records, expected {self.nxt}: {e}")
        self.nxt[p] += 1
        self.got += 1
        if self.got == self.n:
            self.done.set_result(dict(self.nxt))

    def connection_lost(self, exc):
        if not self.done.done():
            self._fail(f"connection lost after {self.got} records: {exc}")

    def close(self):
        if self.transport is not None and not self.transport.is_closing():
            self.ws.send_close(1000)
            self._flush()
            self.transport.close()
