#!/usr/bin/env bash
# Echo round trips/s and p50/p99 over loopback: our ws_echo_server (transport_ws)
# against a Node `ws` echo server (tools/bench/node), same client
# (bench_ws.py), same message size and connection count, same run.
#
#   tools/bench/bench_ws_compare.sh BUILD_DIR [--seconds S] [--conns C] [--size BYTES] [--idle N] [--options JSON]
#
# --idle N also measures RSS per idle connection for both (default 0: echo only;
# raise `ulimit -n` first for N >= ~1000). --options is passed to our server only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: $0 BUILD_DIR [--seconds S] [--conns C] [--size BYTES] [--idle N] [--options JSON]}
shift
seconds=5 conns=4 size=32 idle=0 options='{}'
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --conns) conns=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --idle) idle=$2; shift 2 ;;
        --options) options=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
server_bin=$build/tests/e2e/ws/ws_echo_server
[ -x "$server_bin" ] || { echo "no $server_bin (build first)" >&2; exit 2; }
export KSOCK_PLUGIN_PATH=${KSOCK_PLUGIN_PATH:-$build/plugins}

if [ ! -d "$here/node/node_modules/ws" ]; then
    (cd "$here/node" && npm ci --no-audit --no-fund >&2)
fi

tmp=$(mktemp -d)
node_pid=
cleanup() {
    if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
        kill "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Ours: bench_ws.py starts and stops the server itself (on a free port).
python3 "$here/bench_ws.py" "$server_bin" --seconds "$seconds" --conns "$conns" --size "$size" \
    --idle "$idle" --options "$options" >"$tmp/ours.json"

# Node ws.
port=$(free_port)
node "$here/node/echo_server.js" "$port" >"$tmp/node.out" 2>&1 &
node_pid=$!
for _ in $(seq 100); do
    grep -q READY "$tmp/node.out" 2>/dev/null && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$tmp/node.out" >&2; exit 1; }
    sleep 0.1
done
grep -q READY "$tmp/node.out" || { echo "node server did not start" >&2; exit 1; }
python3 "$here/bench_ws.py" "node:$port:$node_pid" --seconds "$seconds" --conns "$conns" --size "$size" \
    --idle "$idle" >"$tmp/node.json"

python3 - "$tmp/ours.json" "$tmp/node.json" "$seconds" "$conns" "$size" <<'PY'
import json, sys
ours, node = (json.load(open(p)) for p in sys.argv[1:3])
print(f"echo: {sys.argv[4]} connections, {sys.argv[5]}-byte text, {sys.argv[3]} s, one message in flight each")
print("| server | round trips/s | p50 µs | p99 µs | idle B/conn |")
print("| --- | --- | --- | --- | --- |")
for name, r in (("ours (transport_ws)", ours), ("Node ws", node)):
    e = r["echo"]
    idle = r.get("idle", {}).get("bytes_per_idle_connection", "–")
    print(f"| {name} | {e['round_trips_per_s']:,} | {e['p50_us']} | {e['p99_us']} | {idle} |")
o, n = ours["echo"], node["echo"]
print(f"| ratio ours/node | {o['round_trips_per_s'] / n['round_trips_per_s']:.2f} | "
      f"{o['p50_us'] / n['p50_us']:.2f} | {o['p99_us'] / n['p99_us']:.2f} | |")
PY
