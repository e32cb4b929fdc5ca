"""ksockd as an end-to-end test runs it: a temporary config, a free loopback port, stderr kept
in a file, always stopped (SIGTERM, then SIGKILL) and its exit checked. The bridge tests
(tests/e2e/bridge/) subclass KsockdProc with the config each needs."""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    """A port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kernel_listening(port, pid):
    """The local addresses of the TCP sockets listening on `port`, from the kernel's socket
    table (`ss`), e.g. {"127.0.0.1", "[::1]"}: those of process `pid` when ss can tell."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, out.stderr
    found = set()
    for line in out.stdout.splitlines():
        cols = line.split()
        # users:(("ksockd",pid=N,fd=M)) when ss can see the process; else any listener on the port
        if "pid=" in line and f"pid={pid}," not in line:
            continue
        found.add(cols[3].rsplit(":", 1)[0])
    return found


def raw_http_status(port, lines):
    """Send one raw HTTP request (its request line and headers, `lines`) to 127.0.0.1:port and
    return the status of the answer: what a browser, a scanner or a broken client would send."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n" not in buf:
            chunk = c.recv(4096)
            if not chunk:
                break
            buf += chunk
    m = re.match(rb"HTTP/1\.1 (\d{3})", buf)
    assert m, buf[:200]
    return int(m.group(1))


def metric(admin_port, name, **labels):
    """One sample of ksockd's /metrics (the admin endpoint), parsed by prometheus_client."""
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        body = r.read().decode()
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise AssertionError(f"no {name}{labels} in /metrics:\n{body}")


class KsockdProc:
    """`with KsockdProc(ksockd, cfg) as k:` starts ksockd with `cfg` (a dict), waits for the
    line `ready` in its log, and on leaving stops it with SIGTERM and asserts it exited 0
    having logged "ksockd stopped" (unless the block raised). Without `with`, wait_exit()
    gives the status of a start-up that must fail."""

    def __init__(self, ksockd, cfg, env=None, ready="ksockd started"):
        self.dir = tempfile.TemporaryDirectory()
        self.ready = ready
        self.rc = None
        self.final_log = None
        self.config = os.path.join(self.dir.name, "ksockd.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.errpath = os.path.join(self.dir.name, "stderr")
        self.err = open(self.errpath, "w")
        self.p = subprocess.Popen([ksockd, "--config", self.config], stdout=subprocess.DEVNULL,
                                  stderr=self.err, env=dict(os.environ, **(env or {})))

    def log(self):
        if self.final_log is not None:
            return self.final_log
        with open(self.errpath) as f:
            return f.read()

    def stats(self):
        """The counters ksockd logs when the bridge stops (docs/bridge.md); needs a json log."""
        for line in self.log().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("message") == "bridge stopped":
                return r["context"]
        raise AssertionError("no 'bridge stopped' record:\n" + self.log()[-3000:])

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))

    def wait_exit(self, timeout=30):
        """For a start-up that must fail: its exit status."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("ksockd kept running:\n" + self.log())

    def __enter__(self):
        end = time.monotonic() + 30
        while self.ready not in self.log():
            if self.p.poll() is not None:
                raise AssertionError(f"ksockd exited {self.p.returncode}:\n{self.log()}")
            if time.monotonic() > end:
                raise AssertionError(f"ksockd did not log {self.ready!r}:\n" + self.log())
            time.sleep(0.05)
        return self

    def stop(self, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("ksockd did not stop on SIGTERM:\n" + self.log()[-3000:])
        return self.rc

    def __exit__(self, exc_type, *exc):
        try:
            rc = self.stop()
            if exc_type is None:
                assert rc == 0, f"ksockd exited {rc} after SIGTERM:\n{self.log()[-3000:]}"
                assert "ksockd stopped" in self.log()
        finally:
            self.err.close()
            self.final_log = self.log() if os.path.exists(self.errpath) else ""
            self.dir.cleanup()
        return False
