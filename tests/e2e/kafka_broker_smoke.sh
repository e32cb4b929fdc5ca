#!/usr/bin/env bash
# Smoke test of the real Kafka test broker (tools/kafka/ksock-kafka): proves that every
# listener the KafkaSocks e2e tests rely on works with a real client, and that the
# negative cases (wrong password, untrusted CA, wrong server name) really fail.
#
#   tools/kafka/ksock-kafka run -- tests/e2e/kafka_broker_smoke.sh              # single node
#   tools/kafka/ksock-kafka run --mode cluster -- tests/e2e/kafka_broker_smoke.sh
#
# Needs the KSOCK_KAFKA_* environment that `ksock-kafka run` exports, kcat, timeout, openssl.
# Prints one line per check and a closing "N passed, N failed" line; exits 1 on any failure.
#
# SCRAM note: Debian 12's kcat links librdkafka 2.0.2, which repeats the client nonce in the
# SCRAM client-final message; Kafka 4.x rejects that (fixed in librdkafka 2.6.1).  The SCRAM
# checks therefore use kcat only with a fixed librdkafka (or a 3.x broker), and otherwise
# Kafka's own Java client through `ksock-kafka client`.

set -u -o pipefail

if [ -z "${KSOCK_KAFKA_BOOTSTRAP:-}" ]; then
    # 77 tells meson "skipped": ./tools/test always starts a broker, a bare `meson test` may not.
    echo "no broker env: run under tools/kafka/ksock-kafka run -- $0 (or ./tools/test)"
    exit 77
fi
TOOL=${KSOCK_KAFKA_TOOL:-$(cd "$(dirname "$0")/../.." && pwd)/tools/kafka/ksock-kafka}
T=${KSOCK_SMOKE_TIMEOUT:-30}   # bound on every single client command, in seconds
N=10                           # records per round trip
HDR="ksock-trace=smoke-$$"

pass=0 fail=0 skip=0
ok()   { printf 'ok   %s\n' "$1"; pass=$((pass + 1)); }
skip() { printf 'skip %s\n' "$1"; skip=$((skip + 1)); }
bad() {
    printf 'FAIL %s\n' "$1"
    # Enough context to debug from a CI log without flooding it.
    [ -n "${2:-}" ] && printf '%s\n' "$2" | tail -n 12 | sed 's/^/     | /'
    fail=$((fail + 1))
}

kc() { timeout "$T" kcat "$@"; }
jc() { timeout "$((T + 15))" "$TOOL" client "$@"; }   # + JVM start-up

# roundtrip NAME CLIENT(kcat|java) BOOTSTRAP [security -X args...]
# Produces N keyed records carrying a header, consumes them back from the beginning of a fresh
# topic (auto-created) and compares key, value and header of every record, in order.
roundtrip() {
    local name=$1 client=$2 bootstrap=$3
    shift 3
    local topic="ksock-smoke-${name//[^A-Za-z0-9]/-}-$$-$RANDOM"
    local input expected out i
    input=$(for i in $(seq 1 "$N"); do printf 'key-%d|value %d via %s\n' "$i" "$i" "$name"; done)
    expected=$(for i in $(seq 1 "$N"); do printf 'key-%d|value %d via %s|%s\n' "$i" "$i" "$name" "$HDR"; done)
    if [ "$client" = kcat ]; then
        if ! out=$(printf '%s\n' "$input" | kc -P -b "$bootstrap" -t "$topic" -K '|' -H "$HDR" "$@" 2>&1); then
            bad "$name: produce ($client)" "$out"; return
        fi
        out=$(kc -C -b "$bootstrap" -t "$topic" -o beginning -c "$N" -e -q -f '%k|%s|%h\n' "$@" 2>&1)
    else
        if ! out=$(printf '%s\n' "$input" | jc produce -b "$bootstrap" -t "$topic" -K '|' -H "$HDR" "$@" 2>&1); then
            bad "$name: produce ($client)" "$out"; return
        fi
        # stderr apart: JVM/client warnings must not count as records, but explain failures.
        local errf
        errf=$(mktemp)
        out=$(jc consume -b "$bootstrap" -t "$topic" -c "$N" -T "$T" "$@" 2>"$errf")
        [ "$out" = "$expected" ] || out+=$'\n'"$(cat "$errf")"
        rm -f "$errf"
    fi
    if [ "$out" = "$expected" ]; then
        ok "$name: $N keyed records with header produced and consumed back ($client)"
    else
        bad "$name: consumed records differ ($client)" "$(diff <(printf '%s\n' "$expected") <(printf '%s\n' "$out"))"
    fi
}

# must_fail NAME PATTERN CMD...: CMD must exit non-zero (timeout counts) and its output
# must match PATTERN, so that e.g. "connection refused" cannot pass as "auth rejected".
must_fail() {
    local name=$1 pattern=$2 out rc
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        bad "$name: expected failure, but it succeeded" "$out"
    elif ! grep -Eqi -- "$pattern" <<<"$out"; then
        bad "$name: failed (exit $rc) but not with /$pattern/" "$out"
    else
        ok "$name: rejected (exit $rc: $(grep -Eio -m1 -- "$pattern" <<<"$out" | head -n1))"
    fi
}

echo "# Kafka ${KSOCK_KAFKA_VERSION:-?} ${KSOCK_KAFKA_MODE:-?} at $KSOCK_KAFKA_BOOTSTRAP"

# --- PLAINTEXT: metadata lists every node, then a full round trip -------------------------
nodes=${KSOCK_KAFKA_NODES:-1}
if out=$(kc -L -J -b "$KSOCK_KAFKA_BOOTSTRAP" -m 10 2>&1); then
    # Only the "brokers" array: replicas and ISRs carry "id" fields too.
    got=$(sed -n 's/.*"brokers":\[\([^]]*\)\].*/\1/p' <<<"$out" | grep -o '"id":[0-9]*' |
        cut -d: -f2 | sort -n | tr '\n' ' ' | sed 's/ $//')
    want=$(tr ' ' '\n' <<<"$nodes" | sort -n | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" = "$want" ]; then ok "PLAINTEXT: metadata lists brokers [$got]"
    else bad "PLAINTEXT: metadata lists brokers [$got], want [$want]" "$out"; fi
else
    bad "PLAINTEXT: metadata request" "$out"
fi
roundtrip PLAINTEXT kcat "$KSOCK_KAFKA_BOOTSTRAP"

# --- security listeners (single mode only) -----------------------------------------------
if [ -z "${KSOCK_KAFKA_SASL_BOOTSTRAP:-}" ]; then
    skip "SASL/SSL checks: no security listeners in ${KSOCK_KAFKA_MODE:-this} mode"
else
    SUSER=$KSOCK_KAFKA_SASL_USER PASS=$KSOCK_KAFKA_SASL_PASSWORD
    sasl() { echo -X security.protocol="$1" -X sasl.mechanisms="$2" -X sasl.username="$SUSER" -X sasl.password="$3"; }
    tls=(-X ssl.ca.location="$KSOCK_KAFKA_CA" -X ssl.endpoint.identification.algorithm=https)

    # Which client can do SCRAM against this broker (see the note at the top).
    rdk=$(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9][0-9.]*\).*/\1/p' | head -n1)
    broker_major=${KSOCK_KAFKA_VERSION%%.*}
    if [ "${broker_major:-4}" -lt 4 ] ||
        [ "$(printf '%s\n' 2.6.1 "${rdk:-0}" | sort -V | head -n1)" = 2.6.1 ]; then
        scram_client=kcat
    else
        scram_client=java
        echo "# note: kcat's librdkafka ${rdk:-?} cannot do SCRAM with Kafka 4.x (needs >= 2.6.1); SCRAM checks use the Java client"
    fi

    # shellcheck disable=SC2046  # word splitting of $(sasl ...) is intended
    roundtrip "SASL_PLAINTEXT/PLAIN" kcat "$KSOCK_KAFKA_SASL_BOOTSTRAP" $(sasl SASL_PLAINTEXT PLAIN "$PASS")
    # shellcheck disable=SC2046
    roundtrip "SASL_PLAINTEXT/SCRAM-SHA-256" "$scram_client" "$KSOCK_KAFKA_SASL_BOOTSTRAP" $(sasl SASL_PLAINTEXT SCRAM-SHA-256 "$PASS")
    # shellcheck disable=SC2046
    roundtrip "SASL_PLAINTEXT/SCRAM-SHA-512" "$scram_client" "$KSOCK_KAFKA_SASL_BOOTSTRAP" $(sasl SASL_PLAINTEXT SCRAM-SHA-512 "$PASS")
    roundtrip "SSL (CA verified)" kcat "$KSOCK_KAFKA_SSL_BOOTSTRAP" -X security.protocol=SSL "${tls[@]}"
    if [ -n "${KSOCK_KAFKA_SASL_SSL_BOOTSTRAP:-}" ]; then
        # shellcheck disable=SC2046
        roundtrip "SASL_SSL/PLAIN (CA verified)" kcat "$KSOCK_KAFKA_SASL_SSL_BOOTSTRAP" $(sasl SASL_SSL PLAIN "$PASS") "${tls[@]}"
    fi

    # Negative checks: each must fail, and for the stated reason.
    # shellcheck disable=SC2046
    must_fail "SASL PLAIN wrong password" 'Authentication failed|Invalid username or password' \
        kc -L -b "$KSOCK_KAFKA_SASL_BOOTSTRAP" -m 3 $(sasl SASL_PLAINTEXT PLAIN wrong-password)
    # shellcheck disable=SC2046
    must_fail "SASL SCRAM-SHA-256 wrong password" 'Authentication failed|invalid credentials' \
        jc metadata -b "$KSOCK_KAFKA_SASL_BOOTSTRAP" -T 10 $(sasl SASL_PLAINTEXT SCRAM-SHA-256 wrong-password)
    must_fail "SSL untrusted CA" 'certificate verify failed' \
        kc -L -b "$KSOCK_KAFKA_SSL_BOOTSTRAP" -m 3 -X security.protocol=SSL \
        -X ssl.ca.location="$KSOCK_KAFKA_UNTRUSTED_CA"
    if [ -n "${KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP:-}" ]; then
        # Same CA, certificate for ${KSOCK_KAFKA_SSL_BADNAME_SAN}: only the name is wrong.
        must_fail "SSL server name mismatch (kcat)" 'certificate verify failed' \
            kc -L -b "$KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP" -m 3 -X security.protocol=SSL "${tls[@]}"
        must_fail "SSL server name mismatch (openssl s_client)" 'IP address mismatch' \
            timeout "$T" openssl s_client -connect "$KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP" \
            -CAfile "$KSOCK_KAFKA_CA" -verify_ip 127.0.0.1 -verify_return_error </dev/null
        # Control: the same listener works with host-name checks off, so the failure above is
        # the name and nothing else.
        if out=$(kc -L -b "$KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP" -m 10 -X security.protocol=SSL \
            -X ssl.ca.location="$KSOCK_KAFKA_CA" -X ssl.endpoint.identification.algorithm=none 2>&1); then
            ok "SSL name-mismatch listener works with host-name verification off"
        else
            bad "SSL name-mismatch listener with host-name verification off" "$out"
        fi
    fi
fi

if [ "$skip" -gt 0 ]; then
    echo "kafka_broker_smoke: $pass passed, $fail failed, $skip skipped"
else
    echo "kafka_broker_smoke: $pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
