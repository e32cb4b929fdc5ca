"""Run a real Apache Kafka (KRaft) broker or 3-node cluster for KafkaSocks' tests.

The broker comes from Maven Central jars (no Docker, no distribution tarball): `fetch`
resolves them with Maven into a cache, `start` formats fresh KRaft log dirs and launches
`java kafka.Kafka` detached, and waits until a real client (kcat) sees every broker on
every listener.  Everything a test needs (bootstrap addresses, CA files, credentials,
pids) is written to DIR/env.sh and DIR/env.json.

Command line: see `ksock-kafka --help` (tools/kafka/ksock-kafka is a thin wrapper).
From Python:

    from ksock_kafka import KafkaBroker
    with KafkaBroker(mode="single") as kb:
        subprocess.run([...], env={**os.environ, **kb.env})

Only the Python 3.11 standard library is used.  See tools/kafka/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
TOOL = HERE / "ksock-kafka"

DEFAULT_VERSION = "4.4.0"
DEFAULT_START_TIMEOUT = 120.0
STOP_GRACE_SECONDS = 20.0

# Heap and JIT settings keep each JVM small and quick to start on a 2-core machine;
# C1-only JIT (TieredStopAtLevel=1) starts faster, which matters more here than peak speed.
JVM_FLAGS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true",
             # slf4j-simple: timestamps make server.log usable when debugging a failed test.
             "-Dorg.slf4j.simpleLogger.showDateTime=true",
             "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS"]
# The format tool is short-lived; it needs far less heap.
TOOL_JVM_FLAGS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                  "-Djava.awt.headless=true"]

SASL_USER = "alice"
SASL_PASSWORD = "alice-secret"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# Listener names in single mode.  SSL_BADNAME is a second SSL listener whose certificate is
# signed by the trusted CA but carries the wrong subjectAltName, so a client that verifies
# host names must refuse it while the same client with verification off connects fine.
SINGLE_LISTENERS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL", "SSL_BADNAME")
BADNAME_SAN = "DNS:wrong-name.invalid"


class KsockKafkaError(Exception):
    """A failure to report to the user as one clear message (no traceback)."""


def log(msg: str) -> None:
    print(f"ksock-kafka: {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("KSOCK_CACHE") or Path.home() / ".cache" / "ksock")


def kafka_version() -> str:
    return os.environ.get("KSOCK_KAFKA_VERSION") or DEFAULT_VERSION


def java_bin() -> str:
    return os.environ.get("KSOCK_JAVA") or shutil.which("java") or "java"


def kcat_bin() -> str:
    return os.environ.get("KSOCK_KCAT") or shutil.which("kcat") or "kcat"


# --------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------

def _stamp_ok(libs: Path, stamp: Path) -> bool:
    """The stamp is written last, so its presence plus every jar it lists means a
    complete, uninterrupted fetch."""
    try:
        jars = json.loads(stamp.read_text())["jars"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(jars) and all((libs / j).is_file() for j in jars)


def fetch(version: str | None = None, quiet: bool = False) -> Path:
    """Return the libs dir for `version`, resolving it with Maven first if needed."""
    version = version or kafka_version()
    root = cache_root()
    base = root / f"kafka-{version}"
    libs = base / "libs"
    stamp = base / "fetched.json"
    if _stamp_ok(libs, stamp):
        return libs

    base.mkdir(parents=True, exist_ok=True)
    # A lock so that tests started side by side do not run two Maven copies into the
    # same directory; the second one waits and then finds the stamp.
    with open(base / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if _stamp_ok(libs, stamp):
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise KsockKafkaError("mvn not found on PATH (apt-get install maven)")
        # Anything left here without a valid stamp is from an interrupted run: start over.
        for leftover in base.glob("libs*"):
            shutil.rmtree(leftover, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        tmp = base / f"libs.tmp.{os.getpid()}"
        cmd = [mvn, "-q", "-B", "-f", str(POM),
               f"-Dmaven.repo.local={root / 'm2'}",
               f"-Dkafka.version={version}",
               "-Dstyle.color=never",
               "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}",
               "-DincludeScope=runtime"]
        if not quiet:
            log(f"fetching Kafka {version} jars with Maven into {libs} "
                "(first run downloads ~65 MB)")
        t0 = time.monotonic()
        try:
            # On an exception (Ctrl-C, or SIGTERM turned into one by main()) subprocess.run
            # kills Maven, and the half-filled directory goes.
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 cwd=str(HERE))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if res.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            out = (res.stdout + res.stderr).strip().splitlines()
            raise KsockKafkaError("Maven failed to resolve Kafka %s (exit %d):\n%s" % (
                version, res.returncode, "\n".join(out[-40:])))
        jars = sorted(p.name for p in tmp.glob("*.jar"))
        if f"kafka_2.13-{version}.jar" not in jars:
            shutil.rmtree(tmp, ignore_errors=True)
            raise KsockKafkaError(f"Maven ran but kafka_2.13-{version}.jar is missing in {tmp}")
        os.replace(tmp, libs)
        tmp_stamp = base / "fetched.json.tmp"
        tmp_stamp.write_text(json.dumps({"version": version, "jars": jars,
                                         "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                        indent=1))
        os.replace(tmp_stamp, stamp)
        if not quiet:
            log(f"fetched {len(jars)} jars in {time.monotonic() - t0:.1f} s")
    return libs


# --------------------------------------------------------------------------------------
# helpers: ports, TLS material, processes
# --------------------------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    """Ask the kernel for n distinct free loopback ports.  All sockets stay open until all
    are picked so the kernel cannot hand out the same port twice; there is still a small
    window before the broker binds, which is acceptable for tests."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def random_cluster_id() -> str:
    """Same format as kafka.tools.StorageTool random-uuid (url-safe base64 of 16 random
    bytes, no padding) without paying for a JVM start.  Kafka rejects ids that start with
    '-' because they look like command-line options."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise KsockKafkaError("command failed (exit %d): %s\n%s" % (
            res.returncode, shlex.join(cmd), (res.stdout + res.stderr).strip()))
    return res


def make_tls(tls: Path) -> dict[str, str]:
    """Generate a test CA, a server certificate for localhost/127.0.0.1, a certificate with
    a wrong SAN (same CA) and a second, untrusted CA, with openssl.  RSA 2048 is used because
    every TLS stack a C client might link (OpenSSL, GnuTLS, mbed TLS) accepts it."""
    tls.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if not openssl:
        raise KsockKafkaError("openssl not found on PATH")

    def key(name: str) -> Path:
        p = tls / f"{name}.key"
        # genpkey writes PKCS#8, which is what Kafka's PEM keystore requires.
        _run([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
              "-out", str(p)])
        return p

    def ca(name: str, cn: str) -> tuple[Path, Path]:
        k = key(name)
        crt = tls / f"{name}.pem"
        _run([openssl, "req", "-x509", "-new", "-key", str(k), "-sha256", "-days", "3650",
              "-subj", f"/CN={cn}", "-out", str(crt),
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        return k, crt

    def leaf(name: str, cn: str, san: str, ca_key: Path, ca_crt: Path) -> Path:
        k = key(name)
        csr = tls / f"{name}.csr"
        ext = tls / f"{name}.ext"
        crt = tls / f"{name}.pem"
        _run([openssl, "req", "-new", "-key", str(k), "-subj", f"/CN={cn}", "-out", str(csr)])
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       f"subjectAltName={san}\n")
        _run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
              "-CAcreateserial", "-sha256", "-days", "3650", "-extfile", str(ext), "-out", str(crt)])
        csr.unlink()
        ext.unlink()
        # Kafka's PEM keystore is one file: the PKCS#8 key followed by the chain.
        keystore = tls / f"{name}.keystore.pem"
        keystore.write_text(k.read_text() + crt.read_text() + ca_crt.read_text())
        return keystore

    ca_key, ca_crt = ca("ca", "KafkaSocks test CA")
    server_ks = leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1", ca_key, ca_crt)
    badname_ks = leaf("server-badname", "wrong-name.invalid", BADNAME_SAN, ca_key, ca_crt)
    _, untrusted_crt = ca("untrusted-ca", "KafkaSocks UNTRUSTED test CA")
    for p in tls.iterdir():
        if p.suffix == ".key" or p.name.endswith(".keystore.pem"):
            p.chmod(0o600)
    return {"ca": str(ca_crt), "server_keystore": str(server_ks),
            "badname_keystore": str(badname_ks), "untrusted_ca": str(untrusted_crt)}


def _proc_state(pid: int) -> str | None:
    """Process state letter from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    # When `run` or the Python context manager started the broker, the broker is our child
    # and stays a zombie until waited for; for anybody else this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def node_alive(node: dict) -> bool:
    """True if the recorded pid is still *this* broker (guards against pid reuse)."""
    pid = node.get("pid")
    if not pid:
        return False
    _reap(pid)
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and node["config"].encode() in cmdline


def _signal_node(node: dict, sig: int) -> None:
    if node_alive(node):
        # The broker is a session (and so process-group) leader: signal the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node["pid"], sig)


def _wait_dead(nodes: list[dict], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not any(node_alive(n) for n in nodes):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def log_tail(path: str | Path, lines: int = 25) -> str:
    """The first ERROR/exception lines (the cause; a failing broker logs pages of orderly
    shutdown after it) followed by the last `lines` lines of a broker log."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    errors = [ln for ln in text
              if " ERROR " in ln or " FATAL " in ln or "Exception" in ln][:12]
    out = []
    if errors:
        out += ["[first errors]", *errors, "[last lines]"]
    return "\n".join(out + text[-lines:])


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------

def _jaas_plain() -> str:
    return ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'user_{SASL_USER}="{SASL_PASSWORD}";')


SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _properties(node_id: int, ports: dict[str, int], voters: str, data_dir: Path,
                mode: str, tls: dict[str, str] | None, extra: dict[str, str]) -> str:
    listeners = [f"{name}://127.0.0.1:{port}" for name, port in ports.items()]
    advertised = [f"{name}://127.0.0.1:{port}" for name, port in ports.items()
                  if name != "CONTROLLER"]
    rf, min_isr = ("3", "2") if mode == "cluster" else ("1", "1")
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        # Static quorum: one format command for all nodes, no --standalone.
        "controller.quorum.voters": voters,
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": ",".join([
            "CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", "SSL:SSL",
            "SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL", "SSL_BADNAME:SSL"]),
        "log.dirs": str(data_dir),
        "auto.create.topics.enable": "true",
        "num.partitions": "1",
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Tests start consuming right away; don't make the first join wait 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # Small footprint: the defaults size threads and buffers for real servers.
        "log.cleaner.dedupe.buffer.size": "2097152",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
    }
    if tls is not None:
        props.update({
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": tls["server_keystore"],
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": tls["ca"],
            "ssl.client.auth": "none",
            # The wrong-SAN listener only differs in its keystore.
            "listener.name.ssl_badname.ssl.keystore.location": tls["badname_keystore"],
        })
        for lst in ("sasl_plaintext", "sasl_ssl"):
            props[f"listener.name.{lst}.sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
            props[f"listener.name.{lst}.plain.sasl.jaas.config"] = _jaas_plain()
            props[f"listener.name.{lst}.scram-sha-256.sasl.jaas.config"] = SCRAM_JAAS
            props[f"listener.name.{lst}.scram-sha-512.sasl.jaas.config"] = SCRAM_JAAS
    props.update(extra)
    return "".join(f"{k}={v}\n" for k, v in props.items())


# --------------------------------------------------------------------------------------
# readiness (real client requests through kcat)
# --------------------------------------------------------------------------------------

def kcat_security_args(env: dict, listener: str) -> list[str]:
    """kcat -X options that make a valid, verified connection to `listener`."""
    sasl = ["-X", f"sasl.username={env['sasl']['user']}",
            "-X", f"sasl.password={env['sasl']['password']}"]
    ca = ["-X", f"ssl.ca.location={env.get('ca', '')}",
          "-X", "ssl.endpoint.identification.algorithm=https"]
    if listener == "PLAINTEXT":
        return []
    if listener == "SASL_PLAINTEXT":
        return ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN", *sasl]
    if listener == "SASL_SSL":
        return ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN", *sasl, *ca]
    if listener == "SSL":
        return ["-X", "security.protocol=SSL", *ca]
    if listener == "SSL_BADNAME":
        # Host-name verification off: this only checks the listener is up.
        return ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={env.get('ca', '')}",
                "-X", "ssl.endpoint.identification.algorithm=none"]
    raise ValueError(listener)


def kcat_broker_ids(bootstrap: str, extra: list[str], timeout: float = 8.0) -> set[int] | None:
    """Broker ids in a metadata response, or None if the request did not succeed."""
    cmd = [kcat_bin(), "-L", "-J", "-b", bootstrap, "-m", str(max(1, int(timeout) - 2)), *extra]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if res.returncode != 0:
        return None
    try:
        return {b["id"] for b in json.loads(res.stdout)["brokers"]}
    except (ValueError, KeyError, TypeError):
        return None


def _port_open(bootstrap: str) -> bool:
    """Cheap TCP probe, so kcat is not started (and left retrying) before the broker binds."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _wait_ready(want: set[int], watch: list[dict], deadline: float,
                checks: list[tuple[str, str, list[str]]]) -> None:
    """Poll each (what, bootstrap, kcat args) check until its metadata lists every broker id
    in `want`.  Fails early, with the broker log, if a process in `watch` dies."""
    pending = list(checks)
    seen = None
    while pending:
        for n in watch:
            if not node_alive(n):
                raise KsockKafkaError(
                    f"broker node {n['id']} (pid {n['pid']}) exited during start-up; "
                    f"from {n['log']}:\n{log_tail(n['log'])}")
        what, bootstrap, extra = pending[0]
        left = deadline - time.monotonic()
        if _port_open(bootstrap):
            seen = kcat_broker_ids(bootstrap, extra, timeout=min(8.0, max(3.0, left)))
            if seen is not None and want <= seen:
                pending.pop(0)
                continue
        if time.monotonic() >= deadline:
            tails = "\n".join(f"--- from {n['log']}:\n{log_tail(n['log'])}" for n in watch)
            raise KsockKafkaError(
                f"timed out waiting for {what} ({bootstrap}) to list brokers {sorted(want)}; "
                f"last answer: {sorted(seen) if seen is not None else 'no metadata'}\n{tails}")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------
# env files
# --------------------------------------------------------------------------------------

def _flat_env(env: dict) -> dict[str, str]:
    """The environment variables handed to tests (also written to env.sh)."""
    e = {
        "KSOCK_KAFKA_MODE": env["mode"],
        "KSOCK_KAFKA_DIR": env["dir"],
        "KSOCK_KAFKA_VERSION": env["version"],
        "KSOCK_KAFKA_TOOL": str(TOOL),
        "KSOCK_KAFKA_CLUSTER_ID": env["cluster_id"],
        "KSOCK_KAFKA_BOOTSTRAP": env["bootstrap"]["PLAINTEXT"],
        "KSOCK_KAFKA_NODES": " ".join(str(n["id"]) for n in env["nodes"]),
        "KSOCK_KAFKA_PIDS": " ".join(str(n["pid"]) for n in env["nodes"]),
    }
    if env["mode"] == "single":
        e.update({
            "KSOCK_KAFKA_SASL_BOOTSTRAP": env["bootstrap"]["SASL_PLAINTEXT"],
            "KSOCK_KAFKA_SSL_BOOTSTRAP": env["bootstrap"]["SSL"],
            "KSOCK_KAFKA_SASL_SSL_BOOTSTRAP": env["bootstrap"]["SASL_SSL"],
            "KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP": env["bootstrap"]["SSL_BADNAME"],
            "KSOCK_KAFKA_SSL_BADNAME_SAN": BADNAME_SAN,
            "KSOCK_KAFKA_CA": env["ca"],
            "KSOCK_KAFKA_UNTRUSTED_CA": env["untrusted_ca"],
            "KSOCK_KAFKA_SASL_USER": env["sasl"]["user"],
            "KSOCK_KAFKA_SASL_PASSWORD": env["sasl"]["password"],
            "KSOCK_KAFKA_SASL_MECHANISMS": " ".join(env["sasl"]["mechanisms"]),
        })
    for n in env["nodes"]:
        i = n["id"]
        e[f"KSOCK_KAFKA_NODE_{i}_BOOTSTRAP"] = f"127.0.0.1:{n['ports']['PLAINTEXT']}"
        e[f"KSOCK_KAFKA_NODE_{i}_PID"] = str(n["pid"])
        e[f"KSOCK_KAFKA_NODE_{i}_CONTROLLER_PORT"] = str(n["ports"]["CONTROLLER"])
        e[f"KSOCK_KAFKA_NODE_{i}_LOG"] = n["log"]
    return e


def write_env(env: dict) -> None:
    d = Path(env["dir"])
    env["env"] = _flat_env(env)
    # Written to temp files and renamed so a reader never sees half a file.
    tmp = d / "env.json.tmp"
    tmp.write_text(json.dumps(env, indent=2) + "\n")
    os.replace(tmp, d / "env.json")
    tmp = d / "env.sh.tmp"
    tmp.write_text("# Generated by ksock-kafka; source it: . %s\n" % shlex.quote(str(d / "env.sh"))
                   + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env["env"].items()))
    os.replace(tmp, d / "env.sh")


def read_env(directory: str | Path) -> dict:
    p = Path(directory).resolve() / "env.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise KsockKafkaError(f"{p} not found: no broker was started in {directory}") from None


# --------------------------------------------------------------------------------------
# start / stop / kill / restart
# --------------------------------------------------------------------------------------

_CHILDREN: dict[int, subprocess.Popen] = {}


def _launch(node: dict) -> None:
    """Start one broker detached: own session so that the caller's Ctrl-C or exit does not
    hit it (stop is explicit), output appended to node-N/server.log."""
    with open(node["log"], "ab") as logf:
        logf.write(f"\n===== ksock-kafka: starting node {node['id']} at "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        logf.flush()
        proc = subprocess.Popen(node["cmd"], stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=str(Path(node["config"]).parent))
    node["pid"] = proc.pid
    Path(node["config"]).with_name("pid").write_text(f"{proc.pid}\n")
    # Keep the Popen object alive: dropping it would make Python warn about a running
    # child.  node_alive() reaps the exit status by pid when the broker ends.
    _CHILDREN[proc.pid] = proc


def _clear_dir(d: Path) -> None:
    """Remove what a previous start left in d (only our own files)."""
    for p in list(d.glob("node-*")) + [d / "tls"]:
        if p.is_dir():
            shutil.rmtree(p)
    for name in ("env.json", "env.sh", "env.json.tmp", "env.sh.tmp"):
        (d / name).unlink(missing_ok=True)


def start(directory: str | Path, mode: str = "single", version: str | None = None,
          timeout: float = DEFAULT_START_TIMEOUT, extra_config: dict[str, str] | None = None,
          quiet: bool = False) -> dict:
    """Format and start a broker (or cluster) in `directory`; return the env dict."""
    if mode not in ("single", "cluster"):
        raise KsockKafkaError(f"unknown mode {mode!r}")
    for tool in (kcat_bin(), java_bin()):
        if not shutil.which(tool):
            raise KsockKafkaError(f"{tool} not found on PATH")
    t0 = time.monotonic()
    version = version or kafka_version()
    libs = fetch(version, quiet=quiet)
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    if (d / "env.json").exists():
        old = read_env(d)
        if any(node_alive(n) for n in old["nodes"]):
            raise KsockKafkaError(f"a broker from {d} is still running; "
                                  f"run: ksock-kafka stop --dir {d}")
    # KRaft refuses to format a non-empty log dir, so every start is a fresh cluster.
    _clear_dir(d)

    n_nodes = 3 if mode == "cluster" else 1
    listeners = ("PLAINTEXT",) if mode == "cluster" else SINGLE_LISTENERS
    names = ("CONTROLLER",) + listeners
    all_ports = free_ports(n_nodes * len(names))
    node_ports = [dict(zip(names, all_ports[i * len(names):(i + 1) * len(names)]))
                  for i in range(n_nodes)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p['CONTROLLER']}" for i, p in enumerate(node_ports))
    tls = make_tls(d / "tls") if mode == "single" else None
    cluster_id = random_cluster_id()
    classpath = str(libs / "*")  # java expands the wildcard itself

    nodes = []
    for i, ports in enumerate(node_ports):
        nid = i + 1
        nd = d / f"node-{nid}"
        (nd / "data").mkdir(parents=True)
        cfg = nd / "server.properties"
        cfg.write_text(_properties(nid, ports, voters, nd / "data", mode, tls, extra_config or {}))
        nodes.append({
            "id": nid, "pid": None, "ports": ports, "config": str(cfg),
            "bootstrap": f"127.0.0.1:{ports['PLAINTEXT']}",
            "log": str(nd / "server.log"), "data": str(nd / "data"),
            "cmd": [java_bin(), *JVM_FLAGS, "-cp", classpath, "kafka.Kafka", str(cfg)],
        })

    # Format all nodes in parallel (one JVM start each).  SCRAM credentials are added as
    # metadata records at format time, so they exist before any client connects.
    scram = []
    if tls is not None:
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            scram += ["--add-scram", f"{mech}=[name={SASL_USER},password={SASL_PASSWORD}]"]
    fmt = []
    for n in nodes:
        cmd = [java_bin(), *TOOL_JVM_FLAGS, "-cp", classpath, "kafka.tools.StorageTool",
               "format", "-t", cluster_id, "-c", n["config"], *scram]
        fmt.append((n, cmd, subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True)))
    for n, cmd, p in fmt:
        out, _ = p.communicate()
        Path(n["config"]).with_name("format.log").write_text(out)
        if p.returncode != 0:
            tail = "\n".join(out.strip().splitlines()[-30:])
            raise KsockKafkaError(f"formatting node {n['id']} failed (exit {p.returncode}): "
                                  f"{shlex.join(cmd)}\n{tail}")

    env = {
        "mode": mode, "version": version, "dir": str(d), "cluster_id": cluster_id,
        "libs": str(libs),
        "bootstrap": {lst: ",".join(f"127.0.0.1:{n['ports'][lst]}" for n in nodes)
                      for lst in listeners},
        "nodes": nodes,
    }
    if tls is not None:
        env.update({"ca": tls["ca"], "untrusted_ca": tls["untrusted_ca"],
                    "ssl_badname_san": BADNAME_SAN,
                    "sasl": {"user": SASL_USER, "password": SASL_PASSWORD,
                             "mechanisms": list(SASL_MECHANISMS)}})
    try:
        for n in nodes:
            _launch(n)
        # Written before waiting so that `stop` works even if the wait fails or is interrupted.
        write_env(env)
        checks = [("PLAINTEXT metadata", env["bootstrap"]["PLAINTEXT"], [])]
        if mode == "cluster":
            # Every node must answer by itself, not just the first one in the list.
            checks += [(f"node {n['id']} metadata", n["bootstrap"], []) for n in nodes]
        else:
            # SASL listeners are probed with PLAIN only: kcat on Debian 12 (librdkafka 2.0.2)
            # cannot do SCRAM against Kafka 4.x (see KsockClient.java).  SCRAM users exist from
            # the format step; `ksock-kafka client` or the smoke test exercises them.
            for lst in listeners[1:]:
                checks.append((f"{lst} metadata", env["bootstrap"][lst],
                               kcat_security_args(env, lst)))
        _wait_ready({n["id"] for n in nodes}, nodes, t0 + timeout, checks)
    except BaseException:
        # Never leave half a cluster running behind a failed start.  Uses the in-memory node
        # list: a signal may arrive after a launch but before env.json is written.
        _stop_nodes([n for n in nodes if n["pid"]], STOP_GRACE_SECONDS, quiet=True)
        raise
    env["startup_seconds"] = round(time.monotonic() - t0, 2)
    write_env(env)
    if not quiet:
        log(f"{mode} Kafka {version} ready in {env['startup_seconds']} s: "
            f"PLAINTEXT {env['bootstrap']['PLAINTEXT']}; env in {d / 'env.sh'}")
    return env


def _stop_nodes(nodes: list[dict], grace: float, quiet: bool) -> int:
    # All nodes get SIGTERM at once so their controlled shutdowns overlap.
    running = [n for n in nodes if node_alive(n)]
    for n in running:
        _signal_node(n, signal.SIGTERM)
    if not _wait_dead(running, grace):
        for n in running:
            if node_alive(n):
                if not quiet:
                    log(f"node {n['id']} (pid {n['pid']}) still running after "
                        f"{grace:.0f} s; sending SIGKILL")
                _signal_node(n, signal.SIGKILL)
        _wait_dead(running, 5)
    return len(running)


def stop(directory: str | Path, clean: bool = False, quiet: bool = False,
         grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM all nodes (a controlled shutdown), SIGKILL what is left after `grace` s."""
    d = Path(directory).resolve()
    if (d / "env.json").exists():
        n = _stop_nodes(read_env(d)["nodes"], grace, quiet)
        if n and not quiet:
            log(f"stopped {n} node(s) in {d}")
    if clean:
        _clear_dir(d)
        with contextlib.suppress(OSError):
            d.rmdir()  # only if nothing else is in it


def _node(env: dict, node_id: int) -> dict:
    for n in env["nodes"]:
        if n["id"] == node_id:
            return n
    raise KsockKafkaError(f"no node {node_id}; nodes are "
                          f"{', '.join(str(n['id']) for n in env['nodes'])}")


def kill_node(directory: str | Path, node_id: int, sig: str = "KILL", wait: bool = True,
              quiet: bool = False) -> None:
    """SIGKILL simulates a crash; SIGTERM a controlled shutdown."""
    env = read_env(directory)
    n = _node(env, node_id)
    if not node_alive(n):
        if not quiet:
            log(f"node {node_id} is not running")
        return
    signum = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}[sig.upper()]
    _signal_node(n, signum)
    if wait and not _wait_dead([n], STOP_GRACE_SECONDS if signum == signal.SIGTERM else 10):
        raise KsockKafkaError(f"node {node_id} (pid {n['pid']}) did not exit after SIG{sig}")
    if not quiet:
        log(f"sent SIG{sig.upper()} to node {node_id} (pid {n['pid']})")


def restart_node(directory: str | Path, node_id: int, timeout: float = DEFAULT_START_TIMEOUT,
                 quiet: bool = False) -> dict:
    """Start a stopped node again on its old ports and data (stopping it first if it runs)
    and wait until every node's metadata lists all brokers again."""
    t0 = time.monotonic()
    d = Path(directory).resolve()
    env = read_env(d)
    n = _node(env, node_id)
    if node_alive(n):
        kill_node(d, node_id, "TERM", quiet=True)
    # Nodes a test has killed and not restarted are neither waited for nor asked.
    up = [x for x in env["nodes"] if x is not n and node_alive(x)]
    _launch(n)
    write_env(env)
    checks = [(f"node {x['id']} metadata", x["bootstrap"], []) for x in [n, *up]]
    _wait_ready({x["id"] for x in [n, *up]}, [n], t0 + timeout, checks)
    if not quiet:
        log(f"node {node_id} restarted (pid {n['pid']}) and ready in "
            f"{time.monotonic() - t0:.1f} s")
    return env


# --------------------------------------------------------------------------------------
# Java reference client (KsockClient.java)
# --------------------------------------------------------------------------------------

CLIENT_SRC = HERE / "KsockClient.java"


def client_command(version: str | None = None) -> list[str]:
    """argv prefix that runs KsockClient; compiles it into the cache on first use (keyed by
    the source's hash, so an edited source is recompiled) to avoid paying for javac on
    every call."""
    version = version or kafka_version()
    libs = fetch(version, quiet=True)
    digest = hashlib.sha256(CLIENT_SRC.read_bytes()).hexdigest()[:16]
    classes = libs.parent / "client" / digest
    if not (classes / "KsockClient.class").is_file():
        javac = shutil.which("javac")
        if not javac:
            raise KsockKafkaError("javac not found (install a JDK 17, e.g. openjdk-17-jdk-headless)")
        tmp = Path(tempfile.mkdtemp(prefix="client.", dir=libs.parent))
        try:
            _run([javac, "-nowarn", "-cp", str(libs / "*"), "-d", str(tmp), str(CLIENT_SRC)])
            classes.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, classes)
            except OSError:
                pass  # another process compiled it concurrently; use theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [java_bin(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
            "-cp", f"{classes}{os.pathsep}{libs / '*'}", "KsockClient"]


# --------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------

@dataclass
class KafkaBroker:
    """Context manager for Python tests:

        with KafkaBroker(mode="cluster") as kb:
            kb.env["KSOCK_KAFKA_BOOTSTRAP"]; kb.kill_node(2); kb.restart_node(2)

    With dir=None a temporary directory is used and removed afterwards, unless the
    block raised (then it is kept, and its path logged, for the broker logs)."""
    mode: str = "single"
    dir: str | None = None
    version: str | None = None
    timeout: float = DEFAULT_START_TIMEOUT
    extra_config: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict, init=False)
    _tmp: bool = field(default=False, init=False)

    def start(self) -> "KafkaBroker":
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="ksock-kafka-")
            self._tmp = True
        self.info = start(self.dir, self.mode, self.version, self.timeout,
                          self.extra_config, quiet=True)
        return self

    def stop(self, clean: bool | None = None) -> None:
        if self.dir is not None:
            stop(self.dir, clean=self._tmp if clean is None else clean, quiet=True)

    def kill_node(self, node_id: int, sig: str = "KILL") -> None:
        kill_node(self.dir, node_id, sig, quiet=True)

    def restart_node(self, node_id: int) -> None:
        self.info = restart_node(self.dir, node_id, self.timeout, quiet=True)

    @property
    def env(self) -> dict[str, str]:
        return dict(self.info.get("env", {}))

    @property
    def bootstrap(self) -> str:
        return self.info["bootstrap"]["PLAINTEXT"]

    def __enter__(self) -> "KafkaBroker":
        try:
            return self.start()
        except BaseException:
            self.stop(clean=False)
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        failed = exc_type is not None
        self.stop(clean=self._tmp and not failed)
        if failed and self._tmp:
            log(f"kept {self.dir} for inspection")


# --------------------------------------------------------------------------------------
# run: start, run a command, always stop
# --------------------------------------------------------------------------------------

class _Terminated(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def run(directory: str | None, mode: str, cmd: list[str], version: str | None,
        timeout: float, extra_config: dict[str, str]) -> int:
    """Exit status: the command's (128+N if it died of signal N); 3 if the broker could not
    be started; 128+N if ksock-kafka itself got signal N before the command ran."""
    def on_signal(signum, _frame):
        raise _Terminated(signum)

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)
    tmp = directory is None
    d = Path(directory or tempfile.mkdtemp(prefix="ksock-kafka-"))
    rc = 1
    child = None
    try:
        try:
            env = start(d, mode, version, timeout, extra_config)
        except KsockKafkaError as e:
            log(f"broker start failed: {e}")
            return 3
        child = subprocess.Popen(cmd, env={**os.environ, **env["env"]})
        while True:
            try:
                rc = child.wait()
                break
            except _Terminated as t:
                # Pass the signal on (Ctrl-C already reached the child through the terminal's
                # process group, so only forward the others) and keep waiting for it, so that
                # its own cleanup runs before the broker goes away.
                if t.signum != signal.SIGINT:
                    with contextlib.suppress(ProcessLookupError):
                        child.send_signal(t.signum)
                try:
                    rc = child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    rc = child.wait()
                break
        return 128 - rc if rc < 0 else rc
    except _Terminated as t:
        log(f"got signal {t.signum}; stopping")
        return 128 + t.signum
    finally:
        # Ignore further signals while stopping so a second Ctrl-C cannot leave brokers behind.
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        stop(d, clean=tmp and rc == 0)
        if tmp and rc != 0:
            log(f"kept {d} (broker logs) for inspection")


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------

def _parse_set(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise KsockKafkaError(f"--set expects KEY=VALUE, got {v!r}")
        out[k.strip()] = val
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="ksock-kafka",
        description="Run a real Apache Kafka (KRaft) broker from Maven Central jars for tests.")
    sub = ap.add_subparsers(dest="command", required=True)

    def add_start_opts(p, dir_required=True):
        p.add_argument("--dir", required=dir_required,
                       help="working directory for configs, data, logs, TLS files, env.sh")
        p.add_argument("--mode", choices=("single", "cluster"), default="single")
        p.add_argument("--version", default=None,
                       help=f"Kafka version (default $KSOCK_KAFKA_VERSION or {DEFAULT_VERSION})")
        p.add_argument("--timeout", type=float,
                       default=float(os.environ.get("KSOCK_KAFKA_START_TIMEOUT",
                                                    DEFAULT_START_TIMEOUT)),
                       help="seconds to wait for readiness (default 120)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="extra/overriding server.properties entry (repeatable)")

    p = sub.add_parser("fetch", help="resolve the broker jars into the cache")
    p.add_argument("--version", default=None)
    p.add_argument("--print-libs", action="store_true", help="print the libs dir")

    p = sub.add_parser("start", help="start a broker (or cluster) detached and wait until ready")
    add_start_opts(p)

    p = sub.add_parser("stop", help="stop all nodes (SIGTERM, then SIGKILL after 20 s)")
    p.add_argument("--dir", required=True)
    p.add_argument("--clean", action="store_true", help="also delete configs, data, logs")

    p = sub.add_parser("kill", help="signal one node (default SIGKILL, a crash)")
    p.add_argument("--dir", required=True)
    p.add_argument("--node", type=int, required=True)
    p.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for exit")

    p = sub.add_parser("restart-node", help="start a node again (after kill) and wait for it")
    p.add_argument("--dir", required=True)
    p.add_argument("--node", type=int, required=True)
    p.add_argument("--timeout", type=float, default=DEFAULT_START_TIMEOUT)

    p = sub.add_parser("status", help="show nodes, pids and whether they run")
    p.add_argument("--dir", required=True)

    p = sub.add_parser("client", help="run the Java reference client (KsockClient.java); "
                       "args: metadata|produce|consume -b BOOTSTRAP ...")
    p.add_argument("--version", default=None)
    p.add_argument("args", nargs=argparse.REMAINDER)

    p = sub.add_parser("run", help="start, run CMD with the env, always stop; exit with CMD's status")
    add_start_opts(p, dir_required=False)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")

    args = ap.parse_args(argv)

    # SIGTERM/SIGHUP become an exception like Ctrl-C, so that cleanup code runs (a failed
    # start stops the nodes it launched, fetch kills Maven).  `run` installs its own.
    def on_signal(signum, _frame):
        raise _Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        if args.command == "fetch":
            libs = fetch(args.version)
            if args.print_libs:
                print(libs)
            else:
                log(f"Kafka jars ready in {libs}")
            return 0
        if args.command == "start":
            env = start(args.dir, args.mode, args.version, args.timeout, _parse_set(args.set))
            # Printed so that `eval "$(ksock-kafka start --dir D)"` works too.
            sys.stdout.write(Path(env["dir"], "env.sh").read_text())
            return 0
        if args.command == "stop":
            stop(args.dir, clean=args.clean)
            return 0
        if args.command == "kill":
            kill_node(args.dir, args.node, args.signal, wait=not args.no_wait)
            return 0
        if args.command == "restart-node":
            restart_node(args.dir, args.node, args.timeout)
            return 0
        if args.command == "status":
            env = read_env(args.dir)
            any_up = False
            for n in env["nodes"]:
                up = node_alive(n)
                any_up |= up
                rss = ""
                if up:
                    with contextlib.suppress(OSError):
                        for line in Path(f"/proc/{n['pid']}/status").read_text().splitlines():
                            if line.startswith("VmRSS:"):
                                rss = " rss " + " ".join(line.split()[1:])
                print(f"node {n['id']} pid {n['pid']} {'running' if up else 'stopped'} "
                      f"{n['bootstrap']}{rss}")
            return 0 if any_up else 1
        if args.command == "client":
            cargs = args.args[1:] if args.args[:1] == ["--"] else args.args
            cmd = client_command(args.version)
            sys.stdout.flush()
            os.execvp(cmd[0], cmd + cargs)
        if args.command == "run":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                ap.error("run needs a command after --")
            return run(args.dir, args.mode, cmd, args.version, args.timeout, _parse_set(args.set))
    except KsockKafkaError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except _Terminated as t:
        return 128 + t.signum
    return 2


if __name__ == "__main__":
    sys.exit(main())
