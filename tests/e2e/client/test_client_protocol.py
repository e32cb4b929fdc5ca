#!/usr/bin/env python3
"""The subscription bookkeeping of the client API (core/ws/ws_subs.c) against a scripted server:
a Python `websockets` server plays ksockd by docs/protocol.md (Subscriptions) and checks, on each
connection, the subscribe that ws_resume_client's library sends, while it feeds answers no real
server gives on demand: partitions added, a stale record before `subscribed`, a resume refused
with a retriable code, a refusal. Needs no Kafka.

    test_client_protocol.py WS_RESUME_CLIENT [TEST_NAME...]
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402

HAVE = testvenv.need("websockets")  # may run this file again under the venv: argv intact
CLIENT = sys.argv[1]
if HAVE:
    import websockets  # noqa: E402
t = Tap()
TOPIC = "orders"


def need():
    if not HAVE:
        t.skip("python websockets not available (tools/setup --test)")


def env(op, **kw):
    return json.dumps(dict(op=op, **kw))


def record(p, o, v):
    return env("record", topic=TOPIC, partition=p, offset=o, value=v)


def subscribed(offsets, id="resume-test"):
    kw = {"id": id} if id is not None else {}
    return env("subscribed", topic=TOPIC, start="offsets",
               offsets=[{"partition": p, "offset": o} for p, o in offsets], **kw)


async def expect_subscribe(ws, start, offsets=None):
    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert m["op"] == "subscribe" and m["topic"] == TOPIC and m["id"] == "resume-test", m
    assert m.get("start") == start, m
    if offsets is not None:
        got = [(x["partition"], x["offset"]) for x in m["offsets"]]
        assert got == offsets, (got, offsets)


def run_case(scripts, count):
    """Serve one script per connection, in order; run the client until it exits."""
    async def main():
        conns = iter(scripts)
        failures = []

        async def handler(ws, *_):
            script = next(conns, None)
            if script is None:
                failures.append("one connection too many")
                return
            try:
                await script(ws)
            except websockets.ConnectionClosed:
                pass
            except Exception as e:  # noqa: BLE001 - reported below
                failures.append(repr(e))

        async with websockets.serve(handler, "127.0.0.1", 0,
                                    subprotocols=["ksock.v1.json"]) as srv:
            port = srv.sockets[0].getsockname()[1]
            p = await asyncio.create_subprocess_exec(
                CLIENT, f"ws://127.0.0.1:{port}/", TOPIC, str(count),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(p.communicate(), 30)
        assert not failures, failures
        return p.returncode, out.decode().splitlines(), err.decode()

    return asyncio.run(main())


async def hold(ws):
    """Keep the connection until the client closes it."""
    async for _ in ws:
        pass


@t.test
def resume_lists_every_partition_and_drops_stale_records():
    need()

    async def first(ws):
        await expect_subscribe(ws, "earliest")
        await ws.send(subscribed([(0, 5), (1, 0)]))
        await ws.send(record(0, 5, "a"))
        await ws.send(record(1, 0, "b"))
        await ws.send(subscribed([(2, 0)], id=None))  # partitions added
        await ws.send(record(2, 0, "c"))
        await asyncio.sleep(0.3)
        await ws.close(1011, "server going away")

    async def second(ws):
        await expect_subscribe(ws, "offsets", [(0, 6), (1, 1), (2, 1)])
        await ws.send(record(0, 3, "stale"))  # of an earlier subscription: dropped
        await ws.send(subscribed([(0, 6), (1, 1), (2, 1)]))
        await ws.send(record(0, 6, "d"))
        await hold(ws)

    rc, out, err = run_case([first, second], 4)
    assert rc == 0, (rc, err)
    assert out == ["0 5 a", "1 0 b", "2 0 c", "0 6 d"], (out, err)
    assert err.count("reconnected") == 1, err


@t.test
def resume_refused_with_a_retriable_code_is_tried_again():
    need()

    async def first(ws):
        await expect_subscribe(ws, "earliest")
        await ws.send(subscribed([(0, 0)]))
        await ws.send(record(0, 0, "a"))
        await asyncio.sleep(0.3)
        await ws.close(1011, "bye")

    async def second(ws):
        await expect_subscribe(ws, "offsets", [(0, 1)])
        await ws.send(env("error", id="resume-test", topic=TOPIC, error_code=-27,
                          error_message="Kafka did not answer"))
        await expect_subscribe(ws, "offsets", [(0, 1)])  # again, a second later
        await ws.send(subscribed([(0, 1)]))
        await ws.send(record(0, 1, "b"))
        await hold(ws)

    rc, out, err = run_case([first, second], 2)
    assert rc == 0, (rc, err)
    assert out == ["0 0 a", "0 1 b"], (out, err)
    assert "error -27" in err, err


@t.test
def refused_subscribe_ends_the_subscription():
    need()

    async def first(ws):
        await expect_subscribe(ws, "earliest")
        await ws.send(env("error", id="resume-test", topic=TOPIC, error_code=-16,
                          error_message="not allowed"))
        await ws.send(record(0, 0, "after"))  # the client is closing by then
        await hold(ws)

    rc, out, err = run_case([first], 5)
    assert rc == 2, (rc, out, err)  # ws_resume_client: position NOENT after the error
    assert "error -16 not allowed" in err, err


@t.test
def skipped_records_keep_the_subscription():
    need()

    async def first(ws):
        await expect_subscribe(ws, "earliest")
        await ws.send(subscribed([(0, 0)]))
        await ws.send(record(0, 0, "a"))
        await ws.send(env("error", topic=TOPIC, error_code=-32, start="offsets",
                          offsets=[{"partition": 0, "offset": 1}],
                          error_message="slow client"))
        await ws.send(record(0, 4, "b"))
        await hold(ws)

    rc, out, err = run_case([first], 2)
    assert rc == 0, (rc, err)
    assert out == ["0 0 a", "0 4 b"], out


t.run()
