#!/usr/bin/env python3
"""ksockd's wss listener scanned by sslscan (Debian's sslscan 2): TLS 1.2 and 1.3 only, and
no weak cipher suite (docs/security.md, TLS). One run with an RSA certificate, one with an
ECDSA one, since a server offers the suites of its key type only. Certificates are made here
with GnuTLS certtool, as tests/e2e/ws/test_ws_tls.py does; embedded Kafka, 127.0.0.1 only.

    test_tls_scan.py KSOCKD [TEST_NAME...]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
from ksockd_proc import KsockdProc, free_port  # noqa: E402

KSOCKD = sys.argv[1]
t = Tap()
D = tempfile.mkdtemp(prefix="ksock-tlsscan-")

# Cipher names (OpenSSL's) that no current guidance accepts, and the TLS 1.2 suites we
# refuse too: CBC with a SHA-1 MAC (name ending in -SHA) and no forward secrecy (no ECDHE
# or DHE key exchange).
WEAK = re.compile(r"NULL|EXP|RC4|DES|ADH|AECDH|anon|MD5|PSK|SRP|CAMELLIA|SEED|IDEA", re.I)


def need():
    if not shutil.which("sslscan"):
        t.skip("sslscan not installed (tools/setup --test)")
    if not shutil.which("certtool"):
        t.skip("certtool (gnutls-bin) not installed")


def make_cert(kind):
    key, pem = os.path.join(D, kind + ".key"), os.path.join(D, kind + ".pem")
    if os.path.exists(pem):
        return pem, key
    args = ["--key-type", "rsa", "--bits", "2048"] if kind == "rsa" else ["--key-type", "ecdsa"]
    subprocess.run(["certtool", "--generate-privkey", *args, "--outfile", key], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmpl = os.path.join(D, kind + ".tmpl")
    with open(tmpl, "w") as f:
        f.write('cn = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\n'
                'encryption_key\nexpiration_days = 30\n')
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template",
                    tmpl, "--outfile", pem], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return pem, key


def scan(kind):
    """Start ksockd with a wss listener using a `kind` certificate and sslscan it: returns
    ({version: enabled}, [(sslversion, cipher, strength)])."""
    pem, key = make_cert(kind)
    port = free_port()
    cfg = {"kafka": {"bootstrap.servers": "embedded"},
           "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}],
                         "tls_cert": pem, "tls_key": key},
           "auth": {"plugin": "none"},
           "log": {"level": "info", "sinks": [{"type": "console"}]}}
    out = os.path.join(D, kind + ".xml")
    with KsockdProc(KSOCKD, cfg, ready="listening for WebSocket clients"):
        r = subprocess.run(["sslscan", "--no-colour", f"--xml={out}", f"127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert r.returncode == 0, r.stdout.decode(errors="replace")
    root = ET.parse(out).getroot()
    test = root.find("ssltest")
    assert test is not None, open(out).read()
    protos = {f"{p.get('type')}{p.get('version')}": p.get("enabled") == "1"
              for p in test.iter("protocol")}
    ciphers = [(c.get("sslversion"), c.get("cipher"), c.get("strength"))
               for c in test.iter("cipher")]
    return protos, ciphers


def check(kind, kx):
    need()
    protos, ciphers = scan(kind)
    assert protos == {"ssl2": False, "ssl3": False, "tls1.0": False, "tls1.1": False,
                      "tls1.2": True, "tls1.3": True}, protos
    versions = {v for v, _, _ in ciphers}
    assert versions == {"TLSv1.2", "TLSv1.3"}, ciphers
    for v, name, strength in ciphers:
        assert not WEAK.search(name), f"weak cipher accepted: {v} {name}"
        assert strength in ("strong", "acceptable"), f"sslscan rates {name} {strength}"
        if v == "TLSv1.2":
            assert name.startswith("ECDHE-" + kx + "-"), f"no forward secrecy: {name}"
            assert "GCM" in name or "CHACHA20" in name, f"not an AEAD cipher: {name}"
        else:
            assert name.startswith("TLS_AES_") or name.startswith("TLS_CHACHA20"), name
    # The suites most clients use are there: nothing modern was lost with the weak ones.
    names = {n for _, n, _ in ciphers}
    assert f"ECDHE-{kx}-AES128-GCM-SHA256" in names and "TLS_AES_128_GCM_SHA256" in names, names


@t.test
def rsa_certificate_tls12_and_13_only_no_weak_cipher():
    check("rsa", "RSA")


@t.test
def ecdsa_certificate_tls12_and_13_only_no_weak_cipher():
    check("ecdsa", "ECDSA")


try:
    t.run()
finally:
    shutil.rmtree(D, ignore_errors=True)
