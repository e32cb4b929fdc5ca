#!/usr/bin/env python3
"""ksockd under a service manager's readiness protocol (sd_notify, Type=notify).

The test plays systemd: it binds an AF_UNIX datagram socket, starts ksockd with
NOTIFY_SOCKET naming it, and reads what ksockd reports: READY=1 once its
listeners accept connections, RELOADING=1 (with MONOTONIC_USEC) then READY=1
around a SIGHUP, STOPPING=1 on SIGTERM. Each datagram's sender credentials
must be ksockd's own pid (systemd's NotifyAccess=main checks that).

    test_sd_notify.py KSOCKD [TEST_NAME...]
"""
import array
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ksockd_proc import free_port  # noqa: E402
from tap import Tap  # noqa: E402

KSOCKD = sys.argv[1]
t = Tap()


class Manager:
    """The service manager's end: a datagram socket and the ksockd it started."""

    def __init__(self, cfg_text, abstract=False, notify_socket=None):
        self.dir = tempfile.TemporaryDirectory()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = f"ksock-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            addr = "@" + name
        else:
            addr = os.path.join(self.dir.name, "notify")
            self.sock.bind(addr)
        self.config = os.path.join(self.dir.name, "ksockd.json")
        self.write_config(cfg_text)
        self.errpath = os.path.join(self.dir.name, "stderr")
        env = dict(os.environ, NOTIFY_SOCKET=notify_socket if notify_socket is not None else addr)
        with open(self.errpath, "w") as err:
            self.p = subprocess.Popen([KSOCKD, "--config", self.config], env=env,
                                      stdout=subprocess.DEVNULL, stderr=err)

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(text)

    def log(self):
        with open(self.errpath) as f:
            return f.read()

    def next(self, timeout=30):
        """The next notification as {VAR: VALUE}, with the sender's pid as "_pid"."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            raise AssertionError(f"no notification in {timeout}s; exit {self.p.poll()}:\n{self.log()}")
        msg = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                msg["_pid"] = array.array("i", cdata[:12])[0]
        return msg

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.sock.close()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def served_config(port):
    return ('{"kafka": {"bootstrap.servers": "embedded"},'
            ' "websocket": {"listeners": [{"address": "127.0.0.1", "port": %d}]},'
            ' "auth": {"plugin": "none"}}' % port)


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@t.test
def ready_once_listening_then_reload_then_stopping():
    port = free_port()
    with Manager(served_config(port)) as m:
        ready = m.next()
        # Ready means ready: the listener takes connections and start-up is logged.
        assert ready.get("READY") == "1", ready
        assert ready["_pid"] == m.p.pid, (ready, m.p.pid)
        assert ready.get("STATUS") == "serving WebSocket clients", ready
        assert accepts(port), f"READY=1 sent but port {port} refuses connections"
        assert "ksockd started" in m.log(), m.log()

        before = time.monotonic()
        m.p.send_signal(signal.SIGHUP)
        reloading = m.next()
        after = time.monotonic()
        assert reloading.get("RELOADING") == "1", reloading
        # CLOCK_MONOTONIC, as systemd wants it: between the signal and its report.
        usec = int(reloading["MONOTONIC_USEC"])
        assert before * 1e6 - 1000 <= usec <= after * 1e6 + 1000, (before, usec, after)
        assert "READY" not in reloading, reloading
        done = m.next()
        assert done.get("READY") == "1" and "reloaded" in done.get("STATUS", ""), done

        m.p.send_signal(signal.SIGTERM)
        stopping = m.next()
        assert stopping.get("STOPPING") == "1", stopping
        assert stopping.get("STATUS") == "stopping on SIGTERM", stopping
        assert stopping["_pid"] == m.p.pid
        assert m.p.wait(timeout=30) == 0, m.log()
        assert "ksockd stopped" in m.log()


@t.test
def failed_reload_still_reports_ready_with_the_reason():
    with Manager('{"log": {"sinks": [{"type": "console"}]}}') as m:
        ready = m.next()
        assert ready.get("READY") == "1", ready
        assert ready.get("STATUS") == "running (no websocket section)", ready
        m.write_config('{"log": {"sinks": [{"type": "no_such_sink"}]}}')
        m.p.send_signal(signal.SIGHUP)
        assert m.next().get("RELOADING") == "1"
        # systemd would otherwise wait for the reload until its timeout.
        done = m.next()
        assert done.get("READY") == "1", done
        assert done.get("STATUS", "").startswith("reload failed"), done
        assert m.p.poll() is None, "ksockd exited after a bad reload"
        m.p.send_signal(signal.SIGTERM)
        assert m.next().get("STOPPING") == "1"
        assert m.p.wait(timeout=30) == 0, m.log()


@t.test
def abstract_socket_name():
    """NOTIFY_SOCKET=@name: the Linux abstract namespace systemd uses in containers."""
    with Manager('{"log": {"sinks": []}}', abstract=True) as m:
        ready = m.next()
        assert ready.get("READY") == "1" and ready["_pid"] == m.p.pid, ready
        m.p.send_signal(signal.SIGTERM)
        assert m.next().get("STOPPING") == "1"
        assert m.p.wait(timeout=30) == 0, m.log()


@t.test
def unusable_notify_socket_does_not_stop_ksockd():
    """A manager that went away, or an address form ksockd does not speak: it still serves."""
    for bad in ("/nonexistent/notify", "relative/notify", "vsock:2:1234", "@" + "x" * 200):
        port = free_port()
        with Manager(served_config(port), notify_socket=bad) as m:
            end = time.monotonic() + 30
            while "ksockd started" not in m.log():
                assert m.p.poll() is None, (bad, m.log())
                assert time.monotonic() < end, (bad, m.log())
                time.sleep(0.05)
            assert accepts(port), bad
            m.p.send_signal(signal.SIGTERM)
            assert m.p.wait(timeout=30) == 0, (bad, m.log())
            assert "notify" not in m.log().lower(), (bad, m.log())


if __name__ == "__main__":
    t.run()
