#!/usr/bin/env python3
"""Subscriptions end to end, checked against docs/protocol.md (Subscriptions) as an outside
client writer reads it: records produced by kcat and confluent-kafka reach WebSocket
subscribers in json, msgpack and protobuf with every field intact; where each `start` begins;
partitions added; refusals, retention, subscribing twice, unsubscribe. Real broker only
(KSOCK_KAFKA_BOOTSTRAP); every case starts its own ksockd and makes its own topics.

    test_subscribe.py KSOCKD [TEST_NAME...]
"""
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import subutil as su  # noqa: E402
from subutil import Client, Ksockd, run  # noqa: E402

KSOCKD = sys.argv[1]
t = Tap()


def need():
    su.need_broker(t)


def kafka_truth(topic, partitions):
    """Every record of the topic as Kafka has it, read by confluent-kafka: {partition: [dict]}
    in the normalised shape of subutil (null key/value absent, headers (k, None|bytes))."""
    c = su.confluent_kafka.Consumer({"bootstrap.servers": su.BOOTSTRAP, "group.id": "e2e-truth",
                                     "enable.auto.commit": False})
    out = {}
    try:
        for p in range(partitions):
            low, high = c.get_watermark_offsets(su.confluent_kafka.TopicPartition(topic, p),
                                                timeout=20)
            c.assign([su.confluent_kafka.TopicPartition(topic, p, low)])
            recs = []
            end = time.monotonic() + 30
            while len(recs) < high - low:
                assert time.monotonic() < end, "kafka read-back timed out"
                m = c.poll(1)
                if m is None or m.error():
                    continue
                r = {"op": "record", "topic": topic, "partition": p, "offset": m.offset(),
                     "timestamp": m.timestamp()[1]}
                if m.key() is not None:
                    r["key"] = m.key()
                if m.value() is not None:
                    r["value"] = m.value()
                if m.headers():
                    r["headers"] = [(k, v) for k, v in m.headers()]
                recs.append(r)
            out[p] = recs
    finally:
        c.close()
    return out


TS = 1600000000123  # an explicit create time, long before now


def produce_variety(topic):
    """Records with every shape the protocol distinguishes, on 3 partitions; returns what
    was produced as (partition, expected fields) in produce order per partition."""
    hdrs = ["a=1", "b=2", "a=3", "n", "e="]  # order, a duplicate key, null and empty values
    want_h = [("a", b"1"), ("b", b"2"), ("a", b"3"), ("n", None), ("e", b"")]
    # partition 0, kcat with per-line keys: text, empty value, binary value
    su.kcat_produce(topic, [b"k1|v1", b"k2|", b"k3|\xff\xfe\x00bin"], partition=0, key_delim="|",
                    headers=hdrs)
    # partition 0, kcat -Z: an empty value is a null value (a tombstone with a key)
    su.kcat_produce(topic, [b"tomb|"], partition=0, key_delim="|", null_empty=True)
    # partition 1, kcat: an empty key (-k ''), then no key at all, UTF-8 beyond ASCII
    su.kcat_produce(topic, [b"empty key"], partition=1, fixed_key="")
    su.kcat_produce(topic, ["null key caf\u00e9 \U0001F600".encode()], partition=1)
    # partition 2, confluent-kafka: explicit timestamps, null header values, non-UTF-8 key
    p = su.producer()
    p.produce(topic, None, None, partition=2, timestamp=TS,
              headers=[("x", None), ("x", b"1"), ("\u00fc", b"\x00\xff"), ("x", b"")])
    p.produce(topic, b"", b"\xc3\x28", partition=2, timestamp=TS + 1, headers=[("only", None)])
    p.produce(topic, b"{\"json\": true}", b"\x80k", partition=2, timestamp=1)
    assert p.flush(30) == 0
    return {
        0: [dict(key=b"k1", value=b"v1", headers=want_h), dict(key=b"k2", value=b"", headers=want_h),
            dict(key=b"k3", value=b"\xff\xfe\x00bin", headers=want_h), dict(key=b"tomb")],
        1: [dict(key=b"", value=b"empty key"), dict(value="null key caf\u00e9 \U0001F600".encode())],
        2: [dict(timestamp=TS, headers=[("x", None), ("x", b"1"), ("\u00fc", b"\x00\xff"), ("x", b"")]),
            dict(key=b"\xc3\x28", value=b"", timestamp=TS + 1, headers=[("only", None)]),
            dict(key=b"\x80k", value=b"{\"json\": true}", timestamp=1)],
    }


@t.test
def records_reach_subscribers_intact_in_every_format():
    """(a) Keys null vs empty, values null vs empty vs binary, headers in order with duplicates,
    null and empty values, explicit timestamps, 3 partitions: what each format's subscriber
    gets equals, field by field, what was produced and what Kafka holds."""
    need()
    # retention.ms -1: the explicit timestamps are years old, and the broker's retention (7 days)
    # would delete them at its next check (every 5 min), moving the log start
    topic = su.create_topic(su.unique("intact"), 3, config={"retention.ms": "-1"})
    produced = produce_variety(topic)
    truth = kafka_truth(topic, 3)
    for p, want in produced.items():
        assert len(truth[p]) == len(want), (p, truth[p])
        for r, w in zip(truth[p], want):
            for f in ("key", "value", "headers"):
                assert r.get(f) == w.get(f), (p, f, r, w)  # the producers did what we think
            if "timestamp" in w:
                assert r["timestamp"] == w["timestamp"], (r, w)
    with Ksockd(KSOCKD) as k:
        async def one(fmt):
            async with Client(k.url, fmt) as c:
                s = await c.subscribe(topic, id=f"s-{fmt}", start="earliest")
                assert s == {"op": "subscribed", "id": f"s-{fmt}", "topic": topic,
                             "start": "offsets", "offsets": [(0, 0), (1, 0), (2, 0)]}, s
                recs = await c.records(sum(len(v) for v in produced.values()))
                await c.quiet(1.0)  # each exactly once: nothing more
                return recs

        async def all_formats():
            return await asyncio.gather(*(one(f) for f in su.FORMATS))
        got = run(all_formats())
    for fmt, recs in zip(su.FORMATS, got):
        by_p = {p: [r for r in recs if r["partition"] == p] for p in range(3)}
        for p in range(3):
            assert by_p[p] == truth[p], (fmt, p, by_p[p], truth[p])


@t.test
def where_each_start_begins():
    """(c) earliest, latest, offsets (all, some partitions, one listed twice), timestamp,
    timestamp past the end: `subscribed` gives exact offsets and the first record of each
    partition is that offset."""
    need()
    topic = su.create_topic(su.unique("start"), 2, config={"retention.ms": "-1"})  # old times
    t0 = 1700000000000
    p = su.producer()
    for i in range(10):
        p.produce(topic, b"p0-%d" % i, partition=0, timestamp=t0 + i * 1000)
        p.produce(topic, b"p1-%d" % i, partition=1, timestamp=t0 + i * 1000 + 500)
    assert p.flush(30) == 0
    with Ksockd(KSOCKD) as k:
        async def go():
            async def first(c, n=2):
                recs = await c.records(n, timeout=20)
                return {r["partition"]: r["offset"] for r in reversed(recs)}

            async with Client(k.url, "msgpack") as c:
                s = await c.subscribe(topic, id="e", start="earliest")
                assert s["offsets"] == [(0, 0), (1, 0)] and s["id"] == "e", s
                assert await first(c, 20) == {0: 0, 1: 0}
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="o", start="offsets", offsets=[(0, 3), (1, 7)])
                assert s == {"op": "subscribed", "id": "o", "topic": topic, "start": "offsets",
                             "offsets": [(0, 3), (1, 7)]}, s
                recs = await c.records(7 + 3, timeout=20)
                su.check_in_order(recs, {0: 3, 1: 7}, {0: 10, 1: 10})
            async with Client(k.url, "json") as c:
                # the default start is latest: nothing of the 20 records arrives
                s = await c.subscribe(topic, id="l")
                assert s["offsets"] == [(0, 10), (1, 10)], s
                await c.quiet(1.0)
            async with Client(k.url, "protobuf") as c:
                s = await c.subscribe(topic, id="t", start="timestamp", start_timestamp=t0 + 4500)
                # p0: t0+5000 is the first at or after; p1: t0+4500 itself
                assert s["offsets"] == [(0, 5), (1, 4)], s
                recs = await c.records(5 + 6, timeout=20)
                su.check_in_order(recs, {0: 5, 1: 4}, {0: 10, 1: 10})
                assert all(r["timestamp"] >= t0 + 4500 for r in recs), recs
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="tend", start="timestamp",
                                      start_timestamp=t0 + 10**9)
                assert s["offsets"] == [(0, 10), (1, 10)], s
                await c.quiet(1.0)
            async with Client(k.url, "msgpack") as c:
                # "a partition listed twice: the last entry counts"
                s = await c.subscribe(topic, id="dup", start="offsets", offsets=[(1, 2), (1, 8)])
                assert s["offsets"] == [(0, 10), (1, 8)], s
                su.check_in_order(await c.records(2), {0: 10, 1: 8}, {0: 10, 1: 10})
                await c.quiet(0.5)
            # latest and a partial offsets list, then new records: exactly those arrive
            async with Client(k.url, "json") as latest, Client(k.url, "json") as part:
                s = await latest.subscribe(topic, id="l2", start="latest")
                assert s["offsets"] == [(0, 10), (1, 10)], s
                s = await part.subscribe(topic, id="part", start="offsets", offsets=[(1, 8)])
                # partition 0 is left out: it starts at latest
                assert s["offsets"] == [(0, 10), (1, 8)], s
                p.produce(topic, b"new0", partition=0)
                p.produce(topic, b"new1", partition=1)
                assert p.flush(30) == 0
                recs = await latest.records(2, timeout=20)
                su.check_in_order(recs, {0: 10, 1: 10}, {0: 11, 1: 11})
                recs = await part.records(4, timeout=20)
                su.check_in_order(recs, {0: 10, 1: 8}, {0: 11, 1: 11})
                assert [r["value"] for r in recs if r["partition"] == 0] == [b"new0"], recs
        run(go())


@t.test
def partitions_added_are_announced_and_delivered():
    """(g) A subscribed topic grows from 1 to 3 partitions: within bridge.partition_refresh
    (1 s here) a `subscribed` without id lists only the new partitions from offset 0, then
    their records arrive, including those produced before the refresh found them."""
    need()
    topic = su.create_topic(su.unique("grow"), 1)
    with Ksockd(KSOCKD, bridge={"partition_refresh": "1s"}) as k:
        async def go():
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="g", start="earliest")
                assert s["offsets"] == [(0, 0)], s
                su.add_partitions(topic, 3)
                p = su.producer()
                for part in (1, 2):
                    for i in range(3):
                        p.produce(topic, b"new%d-%d" % (part, i), partition=part)
                p.produce(topic, b"old", partition=0)
                assert p.flush(30) == 0
                t_added = time.monotonic()
                announced, recs = None, []
                while len(recs) < 7:
                    e = await c.recv(timeout=20)
                    if e["op"] == "subscribed":
                        assert announced is None, f"announced twice: {e}"
                        announced = e
                        continue
                    assert e["op"] == "record", e
                    if e["partition"] != 0:
                        assert announced is not None, f"a new partition's record first: {e}"
                    recs.append(e)
                assert announced == {"op": "subscribed", "topic": topic, "start": "offsets",
                                     "offsets": [(1, 0), (2, 0)]}, announced
                su.check_in_order(recs, {0: 0, 1: 0, 2: 0}, {0: 1, 1: 3, 2: 3})
                await c.quiet(1.5)
                return time.monotonic() - t_added
        took = run(go())
        print(f"# new partitions announced and delivered within {took:.1f} s")


@t.test
def unknown_topic_and_unknown_partition_are_29():
    """(h) A topic that does not exist: -29 with id and topic, and ksockd does not create it
    (the broker would auto-create on a metadata request that asks to). A partition the topic
    lacks: -29 too. The connection stays usable."""
    need()
    missing = su.unique("missing")
    topic = su.create_topic(su.unique("one"), 1)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                e = await c.subscribe(missing, id="m", start="earliest", expect="error")
                assert e["op"] == "error" and e["error_code"] == -29, e
                assert e["id"] == "m" and e["topic"] == missing, e
                e = await c.subscribe(topic, id="p", start="offsets", offsets=[(0, 0), (5, 0)],
                                      expect="error")
                assert e["op"] == "error" and e["error_code"] == -29 and e["id"] == "p", e
                assert e["topic"] == topic, e
                await c.send({"op": "ping", "id": "after"})
                assert await c.recv() == {"op": "pong", "id": "after"}
        run(go())
    md = su.admin().list_topics(timeout=20)  # all topics: asking for one could create it
    assert missing not in md.topics, "subscribe created the topic"


@t.test
def refused_resubscribe_ends_the_earlier_subscription():
    """(h) Refusals: "no subscription is made (an earlier one on the topic ... is gone)": a
    working subscription, then a subscribe to the same topic refused with -29 (a partition it
    lacks): records produced afterwards do not arrive."""
    need()
    topic = su.create_topic(su.unique("refgone"), 1)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="ok")
                assert s["offsets"] == [(0, 0)], s
                su.produce_many(topic, 1)
                assert (await c.records(1))[0]["offset"] == 0
                e = await c.subscribe(topic, id="bad", start="offsets", offsets=[(3, 0)],
                                      expect="error")
                assert e["error_code"] == -29 and e["id"] == "bad", e
                su.produce_many(topic, 2)
                await c.quiet(1.5)
        run(go())


@t.test
def invalid_topic_name_is_17():
    need()
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "msgpack") as c:
                for i, bad in enumerate(["..", "has space", "x" * 250]):
                    e = await c.subscribe(bad, id=f"b{i}", expect="error")
                    assert e["op"] == "error" and e["error_code"] == -17 and e["id"] == f"b{i}", e
                    # not echoed (docs/bridge.md, Error mapping; protocol.md section 2 says so
                    # for publish, its Refusals table says every refusal has the topic)
                    assert "topic" not in e, e
        run(go())


@t.test
def offset_beyond_the_end_starts_at_the_end():
    need()
    topic = su.create_topic(su.unique("beyond"), 1)
    su.produce_many(topic, 5)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="b", start="offsets", offsets=[(0, 1000)])
                assert s["op"] == "subscribed" and s["offsets"] == [(0, 5)], s
                await c.quiet(0.5)
                su.produce_many(topic, 1, value=lambda i: b"sixth")
                r = await c.recv()
                assert r["op"] == "record" and r["offset"] == 5 and r["value"] == b"sixth", r
        run(go())


@t.test
def deleted_offsets_start_at_log_start_and_say_skipped():
    """(h) Partition 0's records 0..5 deleted (DeleteRecords, as retention would), partition 1
    intact: start offsets 0 and 3 gives `subscribed` at 6 and 3, then error -32 with the
    subscribe's id and only the partition concerned at its requested offset 0, then the
    records. earliest also starts at 6, without -32."""
    need()
    topic = su.create_topic(su.unique("deleted"), 2)
    su.produce_many(topic, 20, partitions=2)
    su.delete_records(topic, 0, 6)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "protobuf") as c:
                s = await c.subscribe(topic, id="r", start="offsets", offsets=[(0, 0), (1, 3)])
                assert s == {"op": "subscribed", "id": "r", "topic": topic, "start": "offsets",
                             "offsets": [(0, 6), (1, 3)]}, s
                e = await c.recv()
                assert e["op"] == "error" and e["error_code"] == -32, e
                assert e.get("id") == "r" and e.get("topic") == topic, e
                assert e.get("start") == "offsets" and e.get("offsets") == [(0, 0)], e
                assert e.get("error_message"), e
                recs = await c.records(4 + 7)
                su.check_in_order(recs, {0: 6, 1: 3}, {0: 10, 1: 10})
                await c.quiet(0.5)
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="e", start="earliest")
                assert s["offsets"] == [(0, 6), (1, 0)], s
                recs = await c.records(4 + 10)
                su.check_in_order(recs, {0: 6, 1: 0}, {0: 10, 1: 10})
        run(go())


@t.test
def log_append_time_topic_gives_the_broker_time():
    """Record fields: on a topic with message.timestamp.type=LogAppendTime the `timestamp`
    is the broker's append time, not the producer's (Kafka's own read-back agrees)."""
    need()
    topic = su.create_topic(su.unique("appendtime"), 1,
                            config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = su.producer()
    p.produce(topic, b"v", partition=0, timestamp=1)
    assert p.flush(30) == 0
    truth = kafka_truth(topic, 1)[0][0]
    assert truth["timestamp"] >= before - 60000, truth  # the broker's clock, not 1
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "msgpack") as c:
                await c.subscribe(topic, id="s", start="earliest")
                return (await c.records(1))[0]
        r = run(go())
    assert r == truth, (r, truth)


@t.test
def latest_while_producing_starts_exactly_at_subscribed():
    """(c) `latest` under a producer writing all the time: each of 20 subscribers arriving at
    different moments gets, per partition, every record from exactly its `subscribed` offset
    on, no gap (the shared reader's position is where it starts)."""
    need()
    topic = su.create_topic(su.unique("latestlive"), 2)
    stop = threading.Event()

    def produce():
        p = su.producer()
        i = 0
        while not stop.is_set():
            p.produce(topic, b"%d" % i, partition=i % 2)
            i += 1
            p.poll(0)
            time.sleep(0.001)
        p.flush(30)
    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        with Ksockd(KSOCKD) as k:
            async def one(i):
                await asyncio.sleep(i * 0.1)
                async with Client(k.url, su.FORMATS[i % 3]) as c:
                    s = await c.subscribe(topic, id=str(i))
                    su.check_in_order(await c.records(300), dict(s["offsets"]))

            async def go():
                await asyncio.gather(*(one(i) for i in range(20)))
            run(go())
    finally:
        stop.set()
        th.join(60)


@t.test
def subscribing_twice_replaces_the_first():
    """(h) A second subscribe on the same topic is a seek: answered like a first, then only
    its records, each once."""
    need()
    topic = su.create_topic(su.unique("twice"), 1)
    su.produce_many(topic, 10)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                s = await c.subscribe(topic, id="one", start="earliest")
                assert s["offsets"] == [(0, 0)], s
                await c.records(3)
                s = await c.subscribe(topic, id="two", start="offsets", offsets=[(0, 7)],
                                      replacing=True)
                assert s == {"op": "subscribed", "id": "two", "topic": topic, "start": "offsets",
                             "offsets": [(0, 7)]}, s
                recs = await c.records(3)
                su.check_in_order(recs, {0: 7}, {0: 10})
                await c.quiet(1.0)
                # seeking back is allowed too
                s = await c.subscribe(topic, id="three", start="earliest")
                assert s["offsets"] == [(0, 0)], s
                su.check_in_order(await c.records(10), {0: 0}, {0: 10})
                await c.quiet(0.5)
        run(go())


@t.test
def unsubscribe_then_resubscribe():
    """(h) `unsubscribed` echoes id and topic; no record after it; unsubscribing a topic not
    subscribed is answered too; a new subscribe from the next offset resumes exactly."""
    need()
    topic = su.create_topic(su.unique("unsub"), 1)
    su.produce_many(topic, 5)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "msgpack") as c:
                s = await c.subscribe(topic, id="s", start="earliest")
                assert s["offsets"] == [(0, 0)], s
                got = await c.records(5)
                await c.send({"op": "unsubscribe", "id": "u", "topic": topic})
                u = await c.recv()
                assert u == {"op": "unsubscribed", "id": "u", "topic": topic}, u
                su.produce_many(topic, 3, value=lambda i: b"while away %d" % i)
                await c.quiet(1.5)
                await c.send({"op": "unsubscribe", "id": "u2", "topic": topic})
                assert await c.recv() == {"op": "unsubscribed", "id": "u2", "topic": topic}
                nxt = got[-1]["offset"] + 1
                s = await c.subscribe(topic, id="s2", start="offsets", offsets=[(0, nxt)])
                assert s["offsets"] == [(0, 5)], s
                recs = await c.records(3)
                su.check_in_order(recs, {0: 5}, {0: 8})
                assert recs[0]["value"] == b"while away 0", recs
        run(go())


@t.test
def forbidden_topic_is_16_and_connection_stays():
    """(h) jwt auth, a token whose `ksock` claim allows subscribing to sub.ok.* only: another
    existing topic is -16 with id and topic; the allowed one still works on the connection."""
    need()
    denied = su.create_topic(su.unique("denied"), 1)
    allowed = su.create_topic("sub.ok." + denied.rsplit(".", 1)[1], 1)
    su.produce_many(denied, 2)
    su.produce_many(allowed, 2)
    with Ksockd(KSOCKD, auth=su.JWT_AUTH) as k:
        async def go():
            tok = su.token(subscribe=["sub.ok.*"], publish=[denied])
            async with Client(k.url, "json", tok=tok) as c:
                e = await c.subscribe(denied, id="f", start="earliest", expect="error")
                assert e["op"] == "error" and e["error_code"] == -16, e
                assert e["id"] == "f" and e["topic"] == denied, e
                s = await c.subscribe(allowed, id="ok", start="earliest")
                assert s["op"] == "subscribed" and s["id"] == "ok", s
                su.check_in_order(await c.records(2), {0: 0}, {0: 2})
                await c.quiet(0.5)  # nothing of the denied topic
        run(go())


@t.test
def subscribe_replaced_before_its_answer_is_25():
    """(h) Two subscribes to one topic sent back to back: the first (earliest, which needs a
    broker lookup, milliseconds) is still unanswered when the second arrives, so it is -25
    with its id and topic; the second is answered and only its records come."""
    need()
    topic = su.create_topic(su.unique("cancel"), 1)
    su.produce_many(topic, 10)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                await c.send({"op": "subscribe", "id": "first", "topic": topic, "start": "earliest"})
                await c.send({"op": "subscribe", "id": "second", "topic": topic, "start": "offsets",
                              "offsets": [(0, 7)]})
                e = await c.recv()
                assert e["op"] == "error" and e["error_code"] == -25, e
                assert e["id"] == "first" and e["topic"] == topic, e
                s = await c.recv()
                assert s == {"op": "subscribed", "id": "second", "topic": topic, "start": "offsets",
                             "offsets": [(0, 7)]}, s
                su.check_in_order(await c.records(3), {0: 7}, {0: 10})
                await c.quiet(1.0)
        run(go())


@t.test
def limits_are_22():
    """(h) bridge.max_catchup_readers 1: while one subscription catches up (its client does
    not read, so it stays behind), another subscribe that needs a catch-up reader is -22;
    `latest` needs none. bridge.max_subscriptions 2: a third topic on a connection is -22,
    re-subscribing a topic it has is not a new one, and after an unsubscribe there is room."""
    need()
    big, t1, t2 = (su.create_topic(su.unique("limit"), 1) for _ in range(3))
    su.produce_many(big, 20000, value=lambda i: b"x" * 200)
    with Ksockd(KSOCKD, bridge={"max_subscriptions": 2, "max_catchup_readers": 1}) as k:
        async def go():
            hog = Client(k.url, "json", max_queue=1, read_limit=4096)
            await hog.__aenter__()
            try:
                await hog.subscribe(big, id="hog", start="earliest")
                async with Client(k.url, "json") as c:
                    e = await c.subscribe(big, id="behind", start="offsets", offsets=[(0, 5)],
                                          expect="error")
                    assert e["error_code"] == -22 and e["id"] == "behind", e
                    assert e["topic"] == big, e
                    await c.subscribe(t1, id="a")
                    await c.subscribe(t2, id="b")
                    e = await c.subscribe(big, id="third", expect="error")
                    assert e["error_code"] == -22 and e["id"] == "third" and e["topic"] == big, e
                    s = await c.subscribe(t2, id="again", start="latest")  # a seek, not a third
                    assert s["id"] == "again", s
                    await c.send({"op": "unsubscribe", "id": "u", "topic": t1})
                    assert (await c.recv())["op"] == "unsubscribed"
                    s = await c.subscribe(big, id="now", start="latest")
                    assert s["offsets"] == [(0, 20000)], s
            finally:
                hog.abort()  # gone without a close handshake
            # the catch-up slot is free once the hog is gone (its close is seen a moment later)
            async with Client(k.url, "msgpack") as c:
                for attempt in range(50):
                    e = await c.subscribe(big, id=f"late{attempt}", start="offsets",
                                          offsets=[(0, 19990)], expect=None)
                    if e["op"] == "subscribed":
                        break
                    assert e["error_code"] == -22, e
                    await asyncio.sleep(0.1)
                assert e["op"] == "subscribed" and e["offsets"] == [(0, 19990)], e
                su.check_in_order(await c.records(10), {0: 19990}, {0: 20000})
        run(go())


@t.test
def seek_during_catch_up():
    """(h) A second subscribe while the first is still catching up (20,000 records behind):
    after the second `subscribed` only its records, from its offset, each once."""
    need()
    topic = su.create_topic(su.unique("seek"), 1)
    su.produce_many(topic, 20000)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "protobuf") as c:
                await c.subscribe(topic, id="first", start="earliest")
                await c.records(5)
                s = await c.subscribe(topic, id="seek", start="offsets", offsets=[(0, 15000)],
                                      replacing=True)
                assert s["offsets"] == [(0, 15000)] and s["id"] == "seek", s
                su.check_in_order(await c.records(5000), {0: 15000}, {0: 20000})
                await c.quiet(1.0)
        run(go())


@t.test
def unsubscribe_during_catch_up():
    """(h) Unsubscribe while 20,000 records are being caught up: records may come before
    `unsubscribed` (already on their way), none after, not even newly produced ones."""
    need()
    topic = su.create_topic(su.unique("unsubcu"), 1)
    su.produce_many(topic, 20000)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "json") as c:
                await c.subscribe(topic, id="s", start="earliest")
                recs = await c.records(5)
                await c.send({"op": "unsubscribe", "id": "u", "topic": topic})
                while True:
                    e = await c.recv()
                    if e["op"] != "record":
                        break
                    recs.append(e)
                assert e == {"op": "unsubscribed", "id": "u", "topic": topic}, e
                su.check_in_order(recs, {0: 0})
                su.produce_many(topic, 2)
                await c.quiet(1.5)
                return len(recs)
        n = run(go())
        print(f"# {n} records before unsubscribed")


@t.test
def topics_on_one_connection_are_independent():
    """(h) Two topics on one connection: unsubscribing one leaves the other delivering."""
    need()
    a, b = su.create_topic(su.unique("ta"), 1), su.create_topic(su.unique("tb"), 1)
    with Ksockd(KSOCKD) as k:
        async def go():
            async with Client(k.url, "msgpack") as c:
                await c.subscribe(a, id="a")
                await c.subscribe(b, id="b")
                su.produce_many(a, 1, value=lambda i: b"A")
                su.produce_many(b, 1, value=lambda i: b"B")
                got = sorted((r["topic"], r["value"]) for r in await c.records(2))
                assert got == [(a, b"A"), (b, b"B")], got
                await c.send({"op": "unsubscribe", "id": "ua", "topic": a})
                assert await c.recv() == {"op": "unsubscribed", "id": "ua", "topic": a}
                su.produce_many(a, 1, value=lambda i: b"A2")
                su.produce_many(b, 1, value=lambda i: b"B2")
                r = await c.recv()
                assert r["topic"] == b and r["value"] == b"B2" and r["offset"] == 1, r
                await c.quiet(1.0)
        run(go())


t.run()
