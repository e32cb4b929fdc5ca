#!/usr/bin/env bash
# Start-up benchmark: how long ksockd takes to validate a config, load every
# bundled plugin, and come up, as the median of repeated runs.
#
#   tools/bench/bench_startup.sh [-n RUNS] [BUILD_DIR]     (default: 30 runs, ./build)
#
# Cases (each run is a fresh process; 3 warm-up runs first, not counted):
#   version        ksockd --version: process start and dynamic linking, the floor
#   check-console  --check-config on a config with only the built-in console sink
#   check-all      --check-config on a config naming every bundled log sink
#                  (file, syslog, http): loads each plugin, checks its descriptor,
#                  validates its options; creates nothing
#   list-plugins   --list-plugins: dlopen()s and checks every bundled plugin in
#                  build/plugins, serializers included
#   start          --config with every log sink: from exec to the "ksockd started"
#                  record on the console sink (all sink instances created)
#   start+stop     the same, then SIGTERM, until the process has exited
#
# The syslog sink writes to a datagram socket and the http sink posts to a
# collector, both served by this script on loopback, so no sink waits on a
# peer that is not there. Prints a Markdown table (milliseconds) for
# docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=30
if [ "${1:-}" = "-n" ]; then runs=$2; shift 2; fi
build=$(cd "${1:-$root/build}" && pwd)
ksockd=$build/tools/ksockd
[ -x "$ksockd" ] || { echo "bench_startup: no $ksockd (build first: ninja -C $build)" >&2; exit 1; }

exec python3 - "$ksockd" "$build/plugins" "$runs" <<'PY'
import http.server
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ksockd, plugindir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="ksock-bench-")


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
syslog_path = os.path.join(tmp, "syslog.sock")
syslog_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
syslog_sock.bind(syslog_path)
syslog_sock.setblocking(False)


def drain_syslog():
    try:
        while syslog_sock.recv(65536):
            pass
    except BlockingIOError:
        pass


def config(name, sinks):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump({"plugin_path": [plugindir], "log": {"level": "info", "sinks": sinks}}, f)
    return path


console = {"type": "console", "stream": "stderr"}
sinks_all = [
    console,
    {"type": "file", "path": os.path.join(tmp, "ksockd.log")},
    {"type": "syslog", "socket": syslog_path},
    {"type": "http", "url": f"http://127.0.0.1:{httpd.server_address[1]}/logs",
     "flush_interval": "10ms"},
]
cfg_console = config("console.json", [console])
cfg_all = config("all.json", sinks_all)
env = {k: v for k, v in os.environ.items() if k != "KSOCK_PLUGIN_PATH"}


def run_cmd(*args):
    def once():
        t0 = time.perf_counter()
        r = subprocess.run([ksockd, *args], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"ksockd {' '.join(args)}: exit {r.returncode}\n{r.stderr.decode()}")
        if b"refused" in r.stderr:  # a refused plugin loads faster: the figure would lie
            sys.exit(f"ksockd {' '.join(args)}: {r.stderr.decode()}")
        return (dt,)
    return once


def run_daemon():
    t0 = time.perf_counter()
    p = subprocess.Popen([ksockd, "--config", cfg_all], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = None
    for line in p.stderr:
        if b"ksockd started" in line:
            ready = time.perf_counter() - t0
            break
    if ready is None:
        sys.exit(f"ksockd --config: no start-up record, exit {p.wait()}")
    p.send_signal(signal.SIGTERM)
    p.stderr.read()
    rc = p.wait()
    total = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"ksockd --config: exit {rc} after SIGTERM")
    drain_syslog()
    return (ready, total)


def measure(fn):
    for _ in range(3):
        fn()
    samples = [fn() for _ in range(runs)]
    drain_syslog()
    return list(zip(*samples))


def row(name, xs):
    xs = sorted(x * 1000 for x in xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    print(f"| {name:<13} | {statistics.median(xs):8.2f} | {xs[0]:8.2f} | {p90:8.2f} |")


nplugins = len([f for f in os.listdir(plugindir) if f.endswith(".so")])
buildtype = "?"
try:
    with open(os.path.join(os.path.dirname(plugindir), "meson-info", "intro-buildoptions.json")) as f:
        opts = {o["name"]: o["value"] for o in json.load(f)}
    buildtype = opts["buildtype"] + (", sanitize=" + opts["b_sanitize"] if opts.get("b_sanitize", "none") != "none" else "")
except (OSError, KeyError, ValueError):
    pass
print(f"ksockd start-up ({buildtype} build), {runs} runs per case after 3 warm-up runs, milliseconds")
print(f"({nplugins} bundled plugins in {plugindir}; {os.cpu_count()} CPUs, "
      f"load average {os.getloadavg()[0]:.2f} at start)\n")
print(f"| {'case':<13} | {'median':>8} | {'min':>8} | {'p90':>8} |")
print(f"| {'-' * 13} | {'-' * 8}:| {'-' * 8}:| {'-' * 8}:|")
row("version", measure(run_cmd("--version"))[0])
row("check-console", measure(run_cmd("--check-config", cfg_console))[0])
row("check-all", measure(run_cmd("--check-config", cfg_all))[0])
row("list-plugins", measure(run_cmd("--list-plugins", "--config", cfg_all))[0])
ready, total = measure(run_daemon)
row("start", ready)
row("start+stop", total)
httpd.shutdown()
syslog_sock.close()
subprocess.run(["rm", "-rf", tmp])
PY
