#!/usr/bin/env bash
# Every WebSocket figure of docs/websocket.md (Benchmark) in one run:
# 32-byte echo ours vs Node `ws` (3 runs), 16 KiB echo for four rx_buffer_size
# values, and 10,000 idle connections (memory, echo while they stay open) for
# the defaults, poll, and two buffer sizes.
#
#   tools/bench/bench_ws_all.sh BUILD_DIR     (a --buildtype=release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: $0 BUILD_DIR}
ulimit -n 20000
export KSOCK_PLUGIN_PATH=${KSOCK_PLUGIN_PATH:-$build/plugins}
server=$build/tests/e2e/ws/ws_echo_server
echo "### $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2 3; do
    echo "### echo 32 B, defaults, run $i"
    "$here/bench_ws_compare.sh" "$build" | tail -4
done
for o in '{}' '{"rx_buffer_size":"2KiB"}' '{"rx_buffer_size":"8KiB"}' '{"rx_buffer_size":"32KiB"}'; do
    echo "### echo 16 KiB, options $o"
    "$here/bench_ws_compare.sh" "$build" --size 16384 --options "$o" | tail -3
done
for o in '{}' '{"event_lib":"poll"}' '{"rx_buffer_size":"2KiB"}' '{"rx_buffer_size":"8KiB"}'; do
    for i in 1 2; do
        echo "### 10,000 idle, options $o, run $i"
        python3 "$here/bench_ws.py" "$server" --idle 10000 --echo-with-idle --options "$o" |
            grep -E "bytes_per|round_trips|p50|p99"
    done
done
echo "### end $(date -u) load $(cut -d' ' -f1-3 /proc/loadavg)"
