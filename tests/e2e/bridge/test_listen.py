#!/usr/bin/env python3
"""ksockd's listeners and the auth rule (docs/bridge.md, docs/websocket.md): a
listener binds exactly its address (read back from the kernel with `ss`), the log
shows what was bound, a bind that cannot happen stops start-up naming the
listener, anonymous auth is loopback-only unless the config says otherwise, and
upgrades with a foreign Origin or Host are refused. Runs on the embedded Kafka
cluster; every connection goes to 127.0.0.1 or ::1 only.

    test_listen.py KSOCKD [TEST_NAME...]
"""
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402
from ksockd_proc import KsockdProc, free_port, kernel_listening, raw_http_status  # noqa: E402

KSOCKD = sys.argv[1]
HAVE = testvenv.need("websockets", "jwt")
if HAVE:
    import jwt  # noqa: E402
    import websockets  # noqa: E402
SECRET = "listen-test-secret-of-at-least-32-bytes!"
NONE = {"plugin": "none"}
t = Tap()


def need_ws():
    if not HAVE:
        t.skip("python websockets/PyJWT not available (tools/setup --test)")


def need_ss():
    if shutil.which("ss") is None:
        t.skip("ss (iproute2) not installed")



def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Ksockd(KsockdProc):
    """ksockd with the given listeners and auth section; always stopped."""

    def __init__(self, listeners, auth=None, websocket=None):
        ws = {"listeners": listeners}
        ws.update(websocket or {})
        cfg = {
            "kafka": {"bootstrap.servers": "embedded"},
            "websocket": ws,
            "auth": auth if auth is not None else {"plugin": "jwt", "secret": SECRET},
            "log": {"level": "info", "sinks": [{"type": "console", "level": "info"}]},
        }
        super().__init__(KSOCKD, cfg)


def ss_form(ip):
    return f"[{ip}]" if ":" in ip else ip


def upgrade_status(port, host=None, origin=None, path="/", query=""):
    """A raw upgrade to 127.0.0.1:port with the given Host and Origin; the HTTP status."""
    key = base64.b64encode(os.urandom(16)).decode()
    hdrs = [f"GET {path}{query} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}",
            "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ksock.v1.json"]
    if origin:
        hdrs.append(f"Origin: {origin}")
    return raw_http_status(port, hdrs)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def ping(url, origin=None, headers=None):
    """Open a Python websockets client, ping through the bridge, return the pong."""
    new_api = int(websockets.__version__.split(".")[0]) >= 14
    kw = {("additional_headers" if new_api else "extra_headers"): headers}
    if origin:
        kw["origin"] = origin

    async def go():
        async with websockets.connect(url, subprotocols=["ksock.v1.json"], max_size=None,
                                      **kw) as ws:
            await ws.send(json.dumps({"op": "ping", "id": "p"}))
            return json.loads(await ws.recv())
    return run(go())


def http_status(exc):
    resp = getattr(exc, "response", None)
    if resp is not None:
        return resp.status_code
    return getattr(exc, "status_code", None)


# ---- the address a listener binds -----------------------------------------------

def assert_binds(address, expect_ips):
    need_ss()
    port = free_port()
    with Ksockd([{"address": address, "port": port}], auth=NONE) as k:
        got = kernel_listening(port, k.p.pid)
        want = {ss_form(ip) for ip in expect_ips}
        assert got == want, f"{address}: kernel shows {got}, expected exactly {want}"
        for ip in expect_ips:
            line = f"listening on ws://{ss_form(ip)}:{port}/"
            assert line in k.log(), f"no {line!r} in the log:\n{k.log()}"
    return port


@t.test
def ipv4_loopback_binds_exactly_127_0_0_1():
    assert_binds("127.0.0.1", ["127.0.0.1"])


@t.test
def ipv6_loopback_binds_exactly_ipv6_only():
    if not have_ipv6_loopback():
        t.skip("no IPv6 loopback on this machine")
    need_ss()
    port = free_port()
    with Ksockd([{"address": "::1", "port": port}], auth=NONE) as k:
        assert kernel_listening(port, k.p.pid) == {"[::1]"}, kernel_listening(port, k.p.pid)
        assert f"listening on ws://[::1]:{port}/" in k.log(), k.log()
        # v6only: the IPv4 loopback on the same port is not served by it.
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex(("127.0.0.1", port)) != 0, "127.0.0.1 reached a ::1 listener"


@t.test
def a_host_name_binds_every_address_it_resolves_to():
    ips = sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", None, 0,
                                                        socket.SOCK_STREAM)})
    assert ips, "localhost does not resolve"
    assert_binds("localhost", ips)


@t.test
def an_address_that_cannot_be_bound_stops_start_up_naming_the_listener():
    port = free_port()
    # 192.0.2.1 (TEST-NET-1) is on no interface: bind() fails with EADDRNOTAVAIL, no packet sent.
    k = Ksockd([{"address": "127.0.0.1", "port": port}, {"address": "192.0.2.1", "port": port}],
               auth={"plugin": "jwt", "secret": SECRET})
    try:
        rc = k.wait_exit()
        log = k.log()
        assert rc == 2 and "Sanitizer" not in log, (rc, log)
        assert 'listeners[1] ("192.0.2.1" port' in log and "cannot bind" in log, log
        assert "ksockd started" not in log, log
    finally:
        k.err.close()
        k.dir.cleanup()


# ---- the auth rule ------------------------------------------------------------

@t.test
def anonymous_auth_on_a_network_listener_is_refused_naming_it():
    need_ss()
    port, port2 = free_port(), free_port()
    k = Ksockd([{"address": "127.0.0.1", "port": port}, {"address": "0.0.0.0", "port": port2}],
               auth=NONE)
    try:
        rc = k.wait_exit()
        log = k.log()
        assert rc == 2 and "Sanitizer" not in log, (rc, log)
        assert 'listeners[1] ("0.0.0.0" port' in log and "allow_anonymous_on_network" in log, log
        assert kernel_listening(port2, k.p.pid) == set()
    finally:
        k.err.close()
        k.dir.cleanup()


@t.test
def anonymous_auth_on_a_network_listener_when_the_config_says_so():
    need_ss()
    port = free_port()
    # Only checked in the kernel table: no traffic goes to a non-loopback address.
    with Ksockd([{"address": "0.0.0.0", "port": port}],
                auth={"plugin": "none", "allow_anonymous_on_network": True}) as k:
        assert kernel_listening(port, k.p.pid) == {"0.0.0.0"}, kernel_listening(port, k.p.pid)
        assert "anonymous clients are accepted on network listeners" in k.log(), k.log()


@t.test
def anonymous_auth_takes_no_other_key():
    k = Ksockd([{"address": "127.0.0.1", "port": free_port()}],
               auth={"plugin": "none", "secret": "x"})
    try:
        rc = k.wait_exit()
        assert rc == 2 and 'takes no key "secret"' in k.log(), (rc, k.log())
    finally:
        k.err.close()
        k.dir.cleanup()


# ---- Origin and Host -------------------------------------------------------------

@t.test
def a_foreign_origin_is_refused_with_403():
    need_ws()
    port = free_port()
    with Ksockd([{"address": "127.0.0.1", "port": port}], auth=NONE) as k:
        url = f"ws://127.0.0.1:{port}/"
        try:
            ping(url, origin="http://evil.example")
            raise AssertionError("a page on evil.example opened a socket")
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - the client's refusal exception
            assert http_status(e) == 403, repr(e)
        assert "upgrade refused: Origin not allowed" in k.log(), k.log()
        assert "evil.example" in k.log()
        # The listener's own host, any port and http or https, and no Origin at all.
        for origin in (f"http://127.0.0.1:{port}", "https://localhost:3000", None):
            assert ping(url, origin=origin) == {"op": "pong", "id": "p"}, origin
        assert upgrade_status(port, origin="null") == 403
        assert upgrade_status(port, origin="http://127.0.0.1.evil.example") == 403


@t.test
def a_foreign_host_is_refused_with_403():
    port = free_port()
    with Ksockd([{"address": "127.0.0.1", "port": port}], auth=NONE) as k:
        # DNS rebinding: evil.example re-pointed at 127.0.0.1; the browser sends its own name.
        assert upgrade_status(port, host=f"evil.example:{port}") == 403
        assert upgrade_status(port, host="evil.example") == 403
        assert "upgrade refused: Host not allowed" in k.log(), k.log()
        for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "localhost",
                     "LOCALHOST."):
            assert upgrade_status(port, host=host) == 101, host


@t.test
def origins_and_hosts_options_open_it_up():
    port = free_port()
    with Ksockd([{"address": "127.0.0.1", "port": port}], auth=NONE,
                websocket={"origins": ["https://app.example"], "hosts": ["ws.example"]}):
        assert upgrade_status(port, origin="https://app.example") == 101
        assert upgrade_status(port, origin=f"http://127.0.0.1:{port}") == 403  # the list replaces
        assert upgrade_status(port, host="ws.example:443") == 101
        assert upgrade_status(port, host="evil.example") == 403
    port = free_port()
    with Ksockd([{"address": "127.0.0.1", "port": port}], auth=NONE,
                websocket={"origins": ["*"], "hosts": ["*"]}):
        assert upgrade_status(port, host="evil.example", origin="http://evil.example") == 101


# ---- a token in the query string -------------------------------------------------

@t.test
def a_long_token_in_the_query_string_is_accepted():
    need_ws()
    port = free_port()
    now = int(time.time())
    tok = jwt.encode({"sub": "q", "iat": now, "exp": now + 600, "pad": "x" * 2900}, SECRET,
                     algorithm="HS256")
    assert len(tok) > 3000, len(tok)
    with Ksockd([{"address": "127.0.0.1", "port": port}]) as k:
        url = f"ws://127.0.0.1:{port}/?room=a&token={tok}"
        assert ping(url) == {"op": "pong", "id": "p"}
        # The same token in a header works too, and a bad one in the query is still refused.
        assert ping(f"ws://127.0.0.1:{port}/",
                    headers={"Authorization": f"Bearer {tok}"}) == {"op": "pong", "id": "p"}
        assert upgrade_status(port, query=f"?token={tok[:-4]}AAAA") == 401, k.log()


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (what it spent on the CPU, not wall time)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@t.test
def out_of_descriptors_the_listener_pauses_instead_of_spinning_and_recovers():
    """With ksockd's descriptor limit lowered (prlimit) to what it uses plus a few, 40 TCP
    connections exhaust it. ksockd says why in its log, and spends little CPU while the rest
    wait in the backlog: no busy loop on a listening socket that stays readable. Once they
    close, a WebSocket client connects and gets its pong."""
    need_ws()
    if shutil.which("prlimit") is None:
        t.skip("prlimit (util-linux) not installed")
    port = free_port()
    with Ksockd([{"address": "127.0.0.1", "port": port}], auth=NONE) as k:
        used = len(os.listdir(f"/proc/{k.p.pid}/fd"))
        hard = subprocess.run(["prlimit", f"--pid={k.p.pid}", "--nofile", "--raw",
                               "--noheadings", "--output=HARD"], capture_output=True, text=True,
                              timeout=10).stdout.split()[0]
        subprocess.run(["prlimit", f"--pid={k.p.pid}", f"--nofile={used + 8}:{hard}"],
                       check=True, timeout=10)
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        try:
            time.sleep(0.5)
            before = cpu_seconds(k.p.pid)
            time.sleep(2.0)
            spent = cpu_seconds(k.p.pid) - before
            log = k.log()
        finally:
            for c in held:
                c.close()
        pong = None
        end = time.monotonic() + 15
        while pong is None:
            try:
                pong = ping(f"ws://127.0.0.1:{port}/")
            except OSError:
                assert time.monotonic() < end, k.log()[-3000:]
                time.sleep(0.2)
    assert "cannot accept connections: Too many open files" in log, log[-3000:]
    assert spent < 0.5, f"ksockd spent {spent:.2f} s of CPU in 2 s while out of descriptors"
    assert pong == {"op": "pong", "id": "p"}, pong


t.run()
