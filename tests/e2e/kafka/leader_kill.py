#!/usr/bin/env python3
"""Three brokers; the leader of a partition is killed (SIGKILL) during a produce run of
100,000 records. Afterwards every record whose completion reported success must be in the
topic at the offset it was acknowledged with, none twice, and each key's records in the
order they were sent.

    leader_kill.py HELPER      HELPER: the kafka_leader_helper program (produce/verify)

Starts its own 3-node cluster with tools/kafka (the run's single broker cannot lose a
leader) and always stops it. Runs in well under 3 minutes on 2 cores.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("KSOCK_SOURCE_ROOT") or os.path.join(HERE, "..", "..", "..")
sys.path.insert(0, os.path.join(HERE, ".."))  # tap.py
sys.path.insert(0, os.path.join(ROOT, "tools", "kafka"))

from tap import Tap  # noqa: E402
from ksock_kafka import KafkaBroker  # noqa: E402

COUNT = 100_000
KEYS = 64
PARTITIONS = 6
RATE = 20_000      # records/s: the run lasts ~5 s, long enough to straddle the failover
KILL_AFTER = 20_000  # acknowledged records before the leader is killed
PRODUCE_DEADLINE = 150  # seconds

helper = sys.argv[1]
t = Tap()


def run(cmd, timeout=120):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in (p.stdout + p.stderr).splitlines():
        print(f"# {line}")
    if p.returncode != 0:
        raise AssertionError(f"{cmd[1]} exited with {p.returncode}")
    return p.stdout


def leader_of(bootstrap, topic, partition):
    out = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-t", topic, "-m", "10"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for tp in json.loads(out)["topics"]:
        if tp["topic"] == topic:
            for p in tp["partitions"]:
                if p["partition"] == partition:
                    return p["leader"]
    raise AssertionError(f"no leader for {topic} [{partition}] in {out}")


@t.test
def leader_killed_during_produce_loses_nothing():
    if not os.environ.get("KSOCK_KAFKA_BOOTSTRAP"):
        t.skip("no broker")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ksock-leader-kill-") as work, \
            KafkaBroker(mode="cluster") as kb:
        print(f"# 3-broker cluster up in {time.monotonic() - t0:.1f} s")
        bootstrap = kb.env["KSOCK_KAFKA_BOOTSTRAP"]
        topic = f"ksock-leader-kill-{os.getpid()}"
        run([helper, "create", bootstrap, topic, str(PARTITIONS)])
        acks = os.path.join(work, "acked.txt")
        prod = subprocess.Popen([helper, "produce", bootstrap, topic, str(COUNT), str(KEYS),
                                 str(RATE), acks], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(PRODUCE_DEADLINE, prod.kill)
        watchdog.start()
        killed, done = None, ""
        try:
            for line in prod.stdout:
                line = line.rstrip()
                print(f"# {line}", flush=True)
                if line.startswith("done"):
                    done = line
                if killed is None and line.startswith("acked ") and int(line.split()[1]) >= KILL_AFTER:
                    killed = leader_of(bootstrap, topic, 0)
                    kb.kill_node(killed, "KILL")
                    print(f"# SIGKILLed node {killed}, the leader of {topic} [0]", flush=True)
            rc = prod.wait()
        finally:
            watchdog.cancel()
        assert rc == 0, f"producer exited with {rc} (killed by the {PRODUCE_DEADLINE} s watchdog?)"
        assert killed is not None, "the produce run ended before the leader could be killed"
        assert done.startswith("done acked="), done
        acked = int(done.split("acked=")[1].split()[0])
        assert acked > COUNT // 2, f"only {acked} of {COUNT} acknowledged"
        survivors = ",".join(n["bootstrap"] for n in kb.info["nodes"] if n["id"] != killed)
        run([helper, "verify", survivors, topic, str(PARTITIONS), str(KEYS), acks])
    print(f"# total {time.monotonic() - t0:.1f} s")


t.run()
