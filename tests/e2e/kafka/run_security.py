#!/usr/bin/env python3
"""Run test-kafka-security, with a SCRAM-capable broker when the run's broker is not one.

librdkafka before 2.6.1 (Debian 12 ships 2.0.2) repeats the client nonce in the SCRAM
client-final message, and Kafka 4.x brokers reject it even with the right password
(librdkafka#4895). When this librdkafka and the run's broker are such a pair, this wrapper
starts a single Kafka 3.9 broker with tools/kafka (same users, same listeners) and points the
SCRAM round trips at it through KT_SCRAM_BOOTSTRAP; every other test, and the check that the
4.x rejection is reported with its reason, still runs against the run's broker.

    run_security.py TEST-PROGRAM [TEST-NAME]
"""
import ctypes
import os
import subprocess
import sys

SCRAM_FALLBACK_VERSION = os.environ.get("KSOCK_KAFKA_SCRAM_VERSION", "3.9.1")


def librdkafka_version() -> int:
    return ctypes.CDLL("librdkafka.so.1").rd_kafka_version()


def main() -> int:
    exe, args = sys.argv[1], sys.argv[2:]
    env = dict(os.environ)
    broker_major = int((env.get("KSOCK_KAFKA_VERSION") or "4").split(".")[0])
    if not env.get("KSOCK_KAFKA_BOOTSTRAP") or librdkafka_version() >= 0x020601FF or broker_major < 4:
        return subprocess.call([exe, *args], env=env)

    root = env.get("KSOCK_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..", "..")
    sys.path.insert(0, os.path.join(root, "tools", "kafka"))
    from ksock_kafka import KafkaBroker  # noqa: E402  (the project's broker tooling)

    try:
        kb = KafkaBroker(mode="single", version=SCRAM_FALLBACK_VERSION).start()
    except Exception as e:  # noqa: BLE001  (any failure is one TAP failure with its reason)
        print("1..1")
        print(f"not ok 1 - start Kafka {SCRAM_FALLBACK_VERSION} for the SCRAM round trips: {e}")
        return 1
    try:
        env["KT_SCRAM_BOOTSTRAP"] = kb.env["KSOCK_KAFKA_SASL_BOOTSTRAP"]
        env["KT_SCRAM_KAFKA_VERSION"] = SCRAM_FALLBACK_VERSION
        sys.stdout.flush()
        return subprocess.call([exe, *args], env=env)
    finally:
        kb.stop()


if __name__ == "__main__":
    sys.exit(main())
