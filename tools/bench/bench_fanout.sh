#!/usr/bin/env bash
# Every figure of docs/benchmarks.md, Fan-out, in one run (< 10 minutes): ksock-bench against a
# fresh ksockd per scenario, on the broker of $KSOCK_KAFKA_BOOTSTRAP.
#
#   . /tmp/kbroker/env.sh; tools/bench/bench_fanout.sh BUILD_DIR [OUT_DIR]
#   tools/kafka/ksock-kafka run -- tools/bench/bench_fanout.sh BUILD_DIR     (its own broker)
#
# Scenarios: fan-out to 100, 1,000 and 10,000 subscribers, json and msgpack, 10,000,000
# deliveries each, producer as fast as it goes; a latency run at half the rate the 1,000-subscriber
# json run reached; 10,000 idle subscribed connections (server RSS per connection); publish over
# 10 connections (100 in flight each) against a raw librdkafka loop. Each ksock-bench prints
# human lines and one JSON line; the JSON lines go to OUT_DIR/results.jsonl and the table at the
# end is made from them.
#
# KSOCK_BENCH_CONFIG: a JSON object merged into ksockd's configuration (e.g. a "bridge" section);
# KSOCK_BENCH_THREADS: ksock-bench's I/O threads (default 1); KSOCK_BENCH_QUICK=1: a tenth of the
# records (a check of the script, not figures).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [OUT_DIR]}" && pwd)
out=${2:-$(mktemp -d /tmp/ksock-bench.XXXXXX)}
mkdir -p "$out"
: "${KSOCK_KAFKA_BOOTSTRAP:?no broker: source the env.sh of tools/kafka/ksock-kafka start, or use ksock-kafka run}"
bench=$build/tools/bench/ksock-bench
ksockd_bin=$build/tools/ksockd
[ -x "$bench" ] && [ -x "$ksockd_bin" ] || { echo "build first: ninja -C $build" >&2; exit 2; }
export KSOCK_PLUGIN_PATH=${KSOCK_PLUGIN_PATH:-$build/plugins}
threads=${KSOCK_BENCH_THREADS:-1}
scale=1
[ "${KSOCK_BENCH_QUICK:-0}" = 1 ] && scale=10
# 10,000 connections: each side needs its descriptors (the bench raises its own soft limit)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 10100 ] ||
    echo "warning: ulimit -n $(ulimit -n): the 10,000-connection runs will fail" >&2

ksockd_pid=
stop_ksockd() {
    if [ -n "$ksockd_pid" ] && kill -0 "$ksockd_pid" 2>/dev/null; then
        kill -TERM "$ksockd_pid"
        wait "$ksockd_pid" 2>/dev/null || true
    fi
    ksockd_pid=
}
trap stop_ksockd EXIT INT TERM

# A fresh ksockd on a free loopback port: sets $ksockd_pid and $url. $ws_extra: JSON members
# added to its "websocket" section.
start_ksockd() {
    local name=$1 port extra=${ws_extra:-}
    [ -n "$extra" ] || extra='{}'
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 - "$out/$name.ksockd.json" "$port" "$extra" <<'EOF'
import json, os, sys
cfg = {
    "kafka": {"bootstrap.servers": os.environ["KSOCK_KAFKA_BOOTSTRAP"]},
    "websocket": dict({"listeners": [{"address": "127.0.0.1", "port": int(sys.argv[2])}]},
                      **json.loads(sys.argv[3])),
    "auth": {"plugin": "none"},
    "log": {"level": "warn", "sinks": [{"type": "console", "level": "warn"}]},
}
extra = os.environ.get("KSOCK_BENCH_CONFIG")
if extra:
    for k, v in json.loads(extra).items():
        cfg[k] = dict(cfg.get(k, {}), **v) if isinstance(v, dict) else v
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
EOF
    "$ksockd_bin" --config "$out/$name.ksockd.json" >"$out/$name.ksockd.log" 2>&1 &
    ksockd_pid=$!
    url=ws://127.0.0.1:$port/
    for _ in $(seq 100); do # ready once the port accepts
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && return 0
        kill -0 "$ksockd_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "ksockd did not start:" >&2
    cat "$out/$name.ksockd.log" >&2
    exit 1
}

# run NAME ksock-bench-args...: one scenario on a fresh ksockd; its JSON line appended.
run() {
    local name=$1
    shift
    echo "### $name: ksock-bench $*"
    start_ksockd "$name"
    local rc=0
    "$bench" "$@" --url "$url" --server-pid "$ksockd_pid" --threads "$threads" --label "$name" \
        >"$out/$name.out" 2>"$out/$name.err" || rc=$?
    stop_ksockd
    sed '$d' "$out/$name.out"
    tail -5 "$out/$name.err" | sed 's/^/  (stderr) /'
    tail -1 "$out/$name.out" >>"$out/results.jsonl"
    [ $rc = 0 ] || echo "  !! $name: ksock-bench exited $rc (see $out/$name.*)"
}

echo "### $(date -u) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "### results in $out"
: >"$out/results.jsonl"
# Throughput: the producer writes a burst as fast as it can, so ksockd's send queues must hold
# every subscriber's share (send_queue_max_frames defaults to 1024, and a subscriber whose queue
# is full is closed with 1013: docs/bridge.md, Slow clients). ksock-bench pauses 500 us after a
# turn with few connections ready, so that it reads many frames per recv().
deliveries=$((10000000 / scale))
for fmt in json msgpack; do
    for n in 100 1000 10000; do
        m=$((deliveries / n))
        run "fanout-$fmt-$n" fanout --format "$fmt" --subscribers "$n" --records "$m" \
            --coalesce-us 500
    done
done

# Latency at half the throughput the 1,000-subscriber json run reached, for ~10 s; 100 us
# coalescing (adds at most 0.1 ms). The send queues are raised as for the bursts: with the
# default 1,024 frames a subscriber is closed (1013) as soon as ksockd falls behind by a third
# of a second at this rate, which on a loaded 2-CPU machine happens.
max=$(python3 -c "
import json
for l in open('$out/results.jsonl'):
    r = json.loads(l)
    if r.get('label') == 'fanout-json-1000': print(int(r.get('deliveries_per_s', 0)))")
rate=$(( ${max:-0} / 1000 / 2 ))
[ "$rate" -ge 10 ] || rate=100
m=$((rate * 10 / scale))
run "latency-json-1000-half" fanout --format json --subscribers 1000 --rate "$rate" \
    --coalesce-us 100 --records "$m"

run "idle-10000" idle --subscribers 10000 --settle 3
run "publish-json-10x100" publish --format json --connections 10 --window 100 \
    --records $((200000 / scale))
run "publish-msgpack-10x100" publish --format msgpack --connections 10 --window 100 \
    --records $((200000 / scale))

echo "### end $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def f(r, k, fmt="{:,.0f}"):
    v = r.get(k)
    return fmt.format(v) if isinstance(v, (int, float)) else "-"
print("\n| scenario | deliveries/s | p50 / p99 / p99.9 ms | missing | server us/deliv | bench us/deliv | bench/server CPU |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["mode"] != "fanout":
        continue
    lat = " / ".join("{:.1f}".format(r[k] / 1000) if k in r else "-"
                     for k in ("lat_p50_us", "lat_p99_us", "lat_p999_us"))
    print(f"| {r['label']} | {f(r, 'deliveries_per_s')} | {lat} | {f(r, 'missing')} | "
          f"{f(r, 'server_us_per_delivery', '{:.2f}')} | {f(r, 'client_us_per_delivery', '{:.2f}')} | "
          f"{f(r, 'client_to_server_cpu', '{:.2f}')} |")
for r in rows:
    if r["mode"] == "idle":
        print(f"\nidle: {r['connections']:,} subscribed connections, server RSS "
              f"{f(r, 'rss_bytes_per_conn')} B per connection "
              f"({f(r, 'rss_before_kib')} -> {f(r, 'rss_after_kib')} KiB), refused {f(r, 'subscribe_refused')}")
for r in rows:
    if r["mode"] == "publish":
        print(f"publish {r['format']}: {f(r, 'acks_per_s')} acks/s over {r['connections']} connections "
              f"x {r['window']} in flight; raw librdkafka {f(r, 'raw_per_s')} records/s; "
              f"ratio {f(r, 'ratio', '{:.2f}')}; p50/p99 publish->ack "
              f"{f(r, 'lat_p50_us')}/{f(r, 'lat_p99_us')} us")
bad = [r["label"] for r in rows if not r.get("ok")]
print("\nall scenarios ok" if not bad else "\nNOT ok: " + ", ".join(bad))
EOF
