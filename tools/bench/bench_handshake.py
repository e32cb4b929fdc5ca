#!/usr/bin/env python3
"""Handshake benchmark: WebSocket upgrades per second through ksockd with each authenticator.

    $VENV/bin/python tools/bench/bench_handshake.py [--connections N] [--rounds R] BUILD_DIR

($VENV: the test venv, ~/.cache/ksock/venv, for PyJWT and cryptography.) One ksockd per case,
all on the embedded Kafka cluster, on 127.0.0.1:

  none        auth {"plugin": "none"}: the floor (TCP, HTTP upgrade, subprotocol, bridge)
  HS256       jwt with a secret
  RS256       jwt with a 2048-bit RSA public_key file
  ES256       jwt with a P-256 public_key file
  RS256-JWKS  jwt with jwks_url: the same RSA key served as a JWKS by a local HTTPS server
              (this script's, cached by the authenticator: fetched once at start-up)

Each round runs `ksock-bench idle --no-subscribe --connections N --token T` against every case
in turn (interleaved, so that a neighbour's load on a shared machine spreads over all cases);
ksock-bench opens N connections, at most 128 handshakes in progress, each with
`Authorization: Bearer T`, and closes them all afterwards. Per case: the median over the
rounds of handshakes/s, ksockd's CPU time per handshake (utime + stime from /proc, so less
sensitive to the machine's other load than the rate), and the ratio against `none`.
Prints a Markdown table for docs/benchmarks.md.
"""
import argparse
import base64
import datetime
import http.server
import ipaddress
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SECRET = "bench-handshake-secret-of-at-least-32-bytes"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64u(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pem_pub(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def https_jwks(d, rsa_key):
    """A local HTTPS server publishing rsa_key's public half as a JWKS (kid "bench"); returns
    (url, ca_file, server)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = os.path.join(d, "jwks.pem"), os.path.join(d, "jwks.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pub = rsa_key.public_key().public_numbers()
    body = json.dumps({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
                                 "n": b64u(pub.n), "e": b64u(pub.e)}]}).encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"https://127.0.0.1:{srv.server_address[1]}/jwks.json", cert_file, srv


def cases(d):
    """[(name, auth section, token)]"""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for n, k in (("rsa.pub", rsa_key), ("ec.pub", ec_key)):
        with open(os.path.join(d, n), "wb") as f:
            f.write(pem_pub(k))
    now = int(time.time())
    claims = {"sub": "bench", "iat": now, "exp": now + 3600,
              "ksock": {"publish": ["bench.*"], "subscribe": ["bench.*"]}}
    url, ca, srv = https_jwks(d, rsa_key)
    return [
        ("none", {"plugin": "none"}, None),
        ("HS256", {"plugin": "jwt", "secret": SECRET}, jwt.encode(claims, SECRET, "HS256")),
        ("RS256", {"plugin": "jwt", "algorithm": "RS256",
                   "public_key": os.path.join(d, "rsa.pub")},
         jwt.encode(claims, rsa_key, "RS256")),
        ("ES256", {"plugin": "jwt", "algorithm": "ES256",
                   "public_key": os.path.join(d, "ec.pub")},
         jwt.encode(claims, ec_key, "ES256")),
        ("RS256-JWKS", {"plugin": "jwt", "algorithm": "RS256", "jwks_url": url,
                        "jwks_ca_file": ca},
         jwt.encode(claims, rsa_key, "RS256", headers={"kid": "bench"})),
    ], srv


def start_ksockd(ksockd, d, name, auth):
    port = free_port()
    cfg = {"kafka": {"bootstrap.servers": "embedded"},
           "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
           "auth": auth, "log": {"level": "info", "sinks": [{"type": "console"}]}}
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    err = open(os.path.join(d, name + ".log"), "w")
    p = subprocess.Popen([ksockd, "--config", path], stdout=subprocess.DEVNULL, stderr=err)
    end = time.monotonic() + 30
    while True:
        with open(err.name) as f:
            if "listening for WebSocket clients" in f.read():
                break
        if p.poll() is not None or time.monotonic() > end:
            raise SystemExit(f"ksockd ({name}) did not start:\n" + open(err.name).read())
        time.sleep(0.05)
    return p, port


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(bench, port, token, n):
    cmd = [bench, "idle", "--url", f"ws://127.0.0.1:{port}/", "--connections", str(n),
           "--no-subscribe", "--settle", "0"]
    if token:
        cmd += ["--token", token]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300)
    line = [x for x in r.stdout.splitlines() if x.startswith("{")]
    res = json.loads(line[-1]) if line else {}
    if r.returncode != 0 or res.get("open") != n:
        raise SystemExit("ksock-bench failed:\n" + r.stdout)
    return res["handshakes_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    ksockd = os.path.join(a.build, "tools", "ksockd")
    bench = os.path.join(a.build, "tools", "bench", "ksock-bench")
    d = tempfile.mkdtemp(prefix="ksock-bench-hs-")
    cs, srv = cases(d)
    procs = {name: start_ksockd(ksockd, d, name, auth) for name, auth, _ in cs}
    rates = {name: [] for name, _, _ in cs}
    cpus = {name: [] for name, _, _ in cs}
    try:
        for name, _, tok in cs:  # warm-up: page faults, first allocations
            one_run(bench, procs[name][1], tok, min(a.connections, 500))
        for _ in range(a.rounds):
            for name, _, tok in cs:
                p, port = procs[name]
                time.sleep(0.5)  # the previous run's closes are done
                c0 = cpu_s(p.pid)
                rates[name].append(one_run(bench, port, tok, a.connections))
                # closing is part of each connection's cost: count the CPU until it settles
                time.sleep(0.5)
                cpus[name].append((cpu_s(p.pid) - c0) / a.connections * 1e6)
    finally:
        for p, _ in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        srv.shutdown()
    base = statistics.median(rates["none"])
    base_cpu = statistics.median(cpus["none"])
    print(f"{a.connections} connections per run, median of {a.rounds} rounds; "
          f"token sizes: " + ", ".join(f"{n} {len(t)} B" for n, _, t in cs if t))
    print()
    print("| auth | handshakes/s (median) | min - max | ksockd CPU per connection | "
          "ratio to none (rate) | extra CPU vs none |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _ in cs:
        m, c = statistics.median(rates[name]), statistics.median(cpus[name])
        print(f"| {name} | {m:,.0f} | {min(rates[name]):,.0f} - {max(rates[name]):,.0f} | "
              f"{c:.0f} us | {m / base:.2f} | {c - base_cpu:+.0f} us |")


if __name__ == "__main__":
    sys.exit(main())
