#!/usr/bin/env python3
"""WSS: certificates made here with GnuTLS certtool; our server (ws_echo_server)
against Python's ssl + websockets, our client (ksock) against our server; bad
certificates refused at start with a message that says which and why."""
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from tap import Tap  # noqa: E402

HAVE_WS = wsutil.ensure_websockets()
SERVER, KSOCK = sys.argv[1], sys.argv[2]
del sys.argv[2]  # tap.py reads test names from argv[2:]
t = Tap()
D = tempfile.mkdtemp(prefix="ksock-wss-")

if HAVE_WS:
    import websockets
    from websockets.exceptions import InvalidStatusCode  # noqa: F401


def need():
    if not HAVE_WS:
        t.skip("Python websockets not installed (tools/setup --test)")
    if not shutil.which("certtool"):
        t.skip("certtool (gnutls-bin) not installed")


def p(name):
    return os.path.join(D, name)


def certtool(*args, template=None):
    if template is not None:
        with open(p("tmpl"), "w") as f:
            f.write(template)
        args = args + ("--template", p("tmpl"))
    subprocess.run(["certtool", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_pki():
    if os.path.exists(p("server.pem")):
        return
    for k in ("ca", "server", "other", "client", "old"):
        certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", p(k + ".key"))
    certtool("--generate-self-signed", "--load-privkey", p("ca.key"), "--outfile", p("ca.pem"),
             template='cn = "KafkaSocks test CA"\nca\ncert_signing_key\nexpiration_days = 30\n')
    signed = ("--load-ca-certificate", p("ca.pem"), "--load-ca-privkey", p("ca.key"))
    certtool("--generate-certificate", "--load-privkey", p("server.key"), *signed,
             "--outfile", p("server.pem"),
             template='cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\n'
                      'tls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n')
    certtool("--generate-certificate", "--load-privkey", p("client.key"), *signed,
             "--outfile", p("client.pem"),
             template='cn = "client one"\ntls_www_client\nsigning_key\nexpiration_days = 30\n')
    certtool("--generate-certificate", "--load-privkey", p("old.key"), *signed,
             "--outfile", p("old.pem"),
             template='cn = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\n'
                      'activation_date = "2020-01-01 00:00:00 UTC"\n'
                      'expiration_date = "2020-02-01 00:00:00 UTC"\n')


def tls_server(port, **extra):
    o = dict(tls_cert=p("server.pem"), tls_key=p("server.key"))
    o.update(extra)
    return wsutil.start_server(SERVER, port, **o)


def client_ctx(cert=False):
    ctx = ssl.create_default_context(cafile=p("ca.pem"))
    if cert:
        ctx.load_cert_chain(p("client.pem"), p("client.key"))
    return ctx


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def refused_at_start(**opts):
    o = {"listeners": [{"address": "127.0.0.1", "port": wsutil.free_port()}]}
    o.update(opts)
    with wsutil.Proc([SERVER, json.dumps(o)]) as s:
        rc = s.p.wait(timeout=10)
        return rc, s.p.stderr.read()


@t.test
def wss_echo_with_a_test_ca():
    need()
    make_pki()
    port = wsutil.free_port()
    with tls_server(port):
        async def go():
            async with websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=client_ctx(),
                                          subprotocols=["ksock.v1.json"]) as ws:
                v = ws.transport.get_extra_info("ssl_object").version()
                assert v in ("TLSv1.2", "TLSv1.3"), v
                await ws.send("secure hello")
                assert await ws.recv() == "secure hello"
                # Batched writes over TLS: a frame larger than one write, then a backlog.
                big = bytes(range(256)) * 800
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send("__flood__ 5000")
                for i in range(5000):
                    assert await ws.recv() == f"flood {i}"
        run(go())


@t.test
def tls_below_1_2_refused():
    need()
    make_pki()
    port = wsutil.free_port()
    with tls_server(port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            t.skip("this Python/OpenSSL cannot offer TLS 1.1")
        async def go():
            try:
                async with websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx):
                    raise AssertionError("TLS 1.1 accepted")
            except (ssl.SSLError, ConnectionError, OSError):
                pass
        run(go())


@t.test
def expired_certificate_refused_at_start():
    need()
    make_pki()
    rc, err = refused_at_start(tls_cert=p("old.pem"), tls_key=p("old.key"))
    assert rc == 2 and "expired on 2020-02-01" in err and "old.pem" in err, (rc, err)


@t.test
def mismatched_key_refused_at_start():
    need()
    make_pki()
    rc, err = refused_at_start(tls_cert=p("server.pem"), tls_key=p("other.key"))
    assert rc == 2 and "does not match" in err and "other.key" in err, (rc, err)
    rc, err = refused_at_start(tls_cert=p("nope.pem"), tls_key=p("server.key"))
    assert rc == 2 and "cannot read tls_cert" in err, (rc, err)
    rc, err = refused_at_start(tls_cert=p("server.pem"))
    assert rc == 2 and "tls_key" in err, (rc, err)


@t.test
def client_certificates():
    need()
    make_pki()
    port = wsutil.free_port()
    with tls_server(port, tls_ca=p("ca.pem"), tls_client_cert="required"):
        async def go():
            async with websockets.connect(f"wss://127.0.0.1:{port}/ws",
                                          ssl=client_ctx(cert=True)) as ws:
                await ws.send("__hs__")
                assert json.loads(await ws.recv())["client_cert_len"] > 100
            try:
                async with websockets.connect(f"wss://127.0.0.1:{port}/ws",
                                              ssl=client_ctx()) as ws:
                    await ws.send("x")
                    await ws.recv()
                raise AssertionError("no client certificate, yet served")
            except (ssl.SSLError, ConnectionError, OSError,
                    websockets.exceptions.WebSocketException):
                pass
        run(go())
    with tls_server(port, tls_ca=p("ca.pem"), tls_client_cert="optional"):
        async def go2():
            async with websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=client_ctx()) as ws:
                await ws.send("__hs__")
                assert json.loads(await ws.recv())["client_cert_len"] == 0
        run(go2())


def ksock(port, *args, line='"over tls"'):
    """Run `ksock connect` against our server; send one line, read one line back."""
    # Keep stdin open until the answer is back: end of input closes the connection.
    with wsutil.Proc([KSOCK, "connect", f"wss://127.0.0.1:{port}/ws", *args], stdin=True) as c:
        c.p.stdin.write(line + "\n")
        c.p.stdin.flush()
        out = c.p.stdout.readline()
        c.p.stdin.close()
        rc = c.p.wait(timeout=20)
        return rc, out, c.p.stderr.read()


@t.test
def our_client_over_wss():
    need()
    make_pki()
    port = wsutil.free_port()
    with tls_server(port):
        rc, out, err = ksock(port, "--cacert", p("ca.pem"))
        assert rc == 0 and out.strip() == '"over tls"', (rc, out, err)
        rc, out, err = ksock(port, "--insecure")
        assert rc == 0 and out.strip() == '"over tls"', (rc, out, err)
        rc, out, err = ksock(port)  # the system store does not know our CA
        assert rc == 1 and '"code": 1006' in err and out == "", (rc, out, err)


@t.test
def our_client_presents_a_certificate():
    need()
    make_pki()
    port = wsutil.free_port()
    ca = ("--cacert", p("ca.pem"))
    with tls_server(port, tls_ca=p("ca.pem"), tls_client_cert="required"):
        rc, out, err = ksock(port, *ca, "--cert", p("client.pem"), "--key", p("client.key"),
                             line="/raw __hs__")
        assert rc == 0, (rc, out, err)
        assert json.loads(out)["client_cert_len"] > 100, out
        # Without one the server refuses the TLS handshake: nothing is echoed.
        rc, out, err = ksock(port, *ca)
        assert rc == 1 and out == "" and '"code": 1006' in err, (rc, out, err)
    # Bad client credentials are refused before any connection, saying which and why.
    rc, out, err = ksock(port, *ca, "--cert", p("old.pem"), "--key", p("old.key"))
    assert rc == 2 and "client certificate" in err and "expired" in err, (rc, err)
    rc, out, err = ksock(port, *ca, "--cert", p("client.pem"), "--key", p("other.key"))
    assert rc == 2 and "does not match" in err, (rc, err)
    rc, out, err = ksock(port, *ca, "--cert", p("client.pem"))
    assert rc == 2 and "key" in err, (rc, err)


try:
    t.run()
finally:
    shutil.rmtree(D, ignore_errors=True)
