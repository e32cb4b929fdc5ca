#!/usr/bin/env python3
"""The plugin SDK as a third party uses it.

Configures a fresh build of this source tree with a temporary --prefix,
installs it, then works only from the installed prefix: pkg-config, the
headers, the bundled plugins under <libdir>/ksock/plugins, an out-of-tree
plugin (examples/logsink_example) built with its own Makefile and nothing
but `pkg-config --cflags --libs ksock`, and the installed ksockd loading it
from a config and logging through it; then a third party's serializer
(examples/serializer_csv) built and `make install`ed the same way, which the
installed ksockd serves to a Python `websockets` client as ksock.v1.csv with
no config naming it. The service side of the install: the man pages render
and agree with --help, the systemd unit passes `systemd-analyze verify` and
its ExecStart/ExecReload, run as written, report READY/RELOADING/STOPPING
over sd_notify.

    test_sdk.py SOURCE_ROOT [TEST_NAME...]

TAP on stdout. KSOCK_KEEP_TMP=1 keeps the temporary directory for a look.
"""
import asyncio
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402

SRC = os.path.abspath(sys.argv[1])
EXAMPLE = os.path.join(SRC, "examples", "logsink_example")
CSV_EXAMPLE = os.path.join(SRC, "examples", "serializer_csv")
HAVE_WS = testvenv.need("websockets")
if HAVE_WS:
    import websockets  # noqa: E402
t = Tap()
S = {}  # state shared by the steps, filled by install_into_a_temporary_prefix


def run(cmd, env=None, timeout=240, cwd=None):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def must(cmd, env=None, timeout=240, cwd=None):
    r = run(cmd, env=env, timeout=timeout, cwd=cwd)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def need_install():
    if "prefix" not in S:
        t.skip("the install step failed")


def sdk_env():
    """The environment a third party has: the prefix, and nothing of the build tree."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KSOCK_") and k not in ("LD_LIBRARY_PATH", "PKG_CONFIG_PATH")}
    env["PKG_CONFIG_PATH"] = S["pcdir"]
    env["LD_LIBRARY_PATH"] = S["libdir"]
    return env


def pkg(*args):
    return must(["pkg-config", *args, "ksock"], env=sdk_env()).stdout.strip()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def ksockd(*args, timeout=30):
    return run([S["ksockd"], *args], env=sdk_env(), timeout=timeout)


def example_config(name, sinks):
    """A config whose plugin_path is only the example's build directory."""
    import json
    return write(os.path.join(S["tmp"], name),
                 json.dumps({"plugin_path": [S["example_dir"]], "log": {"sinks": sinks}}, indent=2))


@t.test
def install_into_a_temporary_prefix():
    for tool in ("meson", "ninja", "make", "pkg-config", "cc", "nm"):
        if shutil.which(tool) is None:
            t.skip(f"{tool} not found")
    tmp = tempfile.mkdtemp(prefix="ksock-sdk-")
    S["tmp"] = tmp
    prefix, build = os.path.join(tmp, "prefix"), os.path.join(tmp, "build")
    # A build of its own: `meson install` can only install to the prefix the
    # build was configured with. No tests: they are not part of the SDK.
    must(["meson", "setup", build, SRC, f"--prefix={prefix}", "-Dtests=false"], cwd=tmp)
    must(["ninja", "-C", build, "install"], timeout=280)
    pcs = glob.glob(os.path.join(prefix, "**", "pkgconfig", "ksock.pc"), recursive=True)
    assert len(pcs) == 1, f"ksock.pc installed {len(pcs)} times: {pcs}"
    S["pcdir"] = os.path.dirname(pcs[0])
    S["libdir"] = os.path.dirname(S["pcdir"])  # <prefix>/lib/x86_64-linux-gnu on Debian
    S["build"] = build
    S["ksockd"] = os.path.join(prefix, "sbin", "ksockd")
    assert os.access(S["ksockd"], os.X_OK), "ksockd not installed in <prefix>/sbin"
    assert os.path.exists(os.path.join(S["libdir"], "libksock.so")), "no libksock.so dev symlink"
    S["prefix"] = prefix
    print(f"# prefix {prefix}, libdir {S['libdir']}")


@t.test
def pkg_config_describes_the_sdk():
    need_install()
    cflags, libs = pkg("--cflags"), pkg("--libs")
    assert f"-I{S['prefix']}/include" in cflags.split(), cflags
    assert f"-L{S['libdir']}" in libs.split() and "-lksock" in libs.split(), libs
    assert pkg("--variable=plugindir") == os.path.join(S["libdir"], "ksock", "plugins")
    version = must([S["ksockd"], "--version"], env=sdk_env()).stdout
    assert version.startswith(f"ksockd {pkg('--modversion')} "), version


@t.test
def every_public_header_is_installed():
    need_install()
    have = sorted(os.path.basename(h) for h in glob.glob(os.path.join(S["prefix"], "include", "ksock", "*.h")))
    want = sorted(os.path.basename(h) for h in glob.glob(os.path.join(SRC, "include", "ksock", "*.h")))
    missing = sorted(set(want) - set(have))
    assert not missing, f"in include/ksock/ but not installed (include/meson.build): {missing}"


@t.test
def installed_headers_compile_alone():
    """Each header includes what it needs, in C11 with warnings as errors, and in C++."""
    need_install()
    cflags = pkg("--cflags").split()
    bad = []
    for h in sorted(glob.glob(os.path.join(S["prefix"], "include", "ksock", "*.h"))):
        src = f"#include <ksock/{os.path.basename(h)}>\n"
        compilers = [["cc", "-std=c11", "-x", "c"]]
        if shutil.which("c++"):
            compilers.append(["c++", "-std=c++11", "-x", "c++"])
        for cc in compilers:
            r = subprocess.run([*cc, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", *cflags, "-"],
                               input=src, capture_output=True, text=True, env=sdk_env())
            if r.returncode != 0:
                bad.append(f"{os.path.basename(h)} ({cc[0]}): {r.stderr.strip()[:500]}")
    assert not bad, "\n".join(bad)


@t.test
def bundled_plugins_are_installed_in_plugindir():
    need_install()
    plugindir = pkg("--variable=plugindir")
    built = sorted(os.path.basename(p) for p in glob.glob(os.path.join(S["build"], "plugins", "*.so")))
    installed = sorted(os.path.basename(p) for p in glob.glob(os.path.join(plugindir, "*.so")))
    assert built, "the build made no plugins"
    assert installed == built, f"built {built}, installed {installed}"
    assert "logsink_file.so" in installed, installed
    for name in installed:  # each exports the entry symbol and nothing else
        syms = must(["nm", "-D", "--defined-only", os.path.join(plugindir, name)]).stdout.split()
        exported = [s for s in syms if not re.fullmatch(r"[0-9a-f]+|[A-Za-z]", s)]
        assert exported == ["ksock_plugin_entry"], f"{name} exports {exported}"


@t.test
def example_builds_with_pkg_config_only():
    need_install()
    out = os.path.join(S["tmp"], "example")
    # The example's own Makefile, from a copy of its directory: an SDK user's checkout.
    work = os.path.join(S["tmp"], "example-src")
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("build"))
    r = must(["make", "-C", work, f"BUILD={out}"], env=sdk_env())
    assert "warning" not in r.stderr.lower(), r.stderr
    so = os.path.join(out, "logsink_example.so")
    syms = must(["nm", "-D", "--defined-only", so]).stdout.split()
    exported = [s for s in syms if not re.fullmatch(r"[0-9a-f]+|[A-Za-z]", s)]
    assert exported == ["ksock_plugin_entry"], f"exports {exported}"
    S["example_dir"] = out


def need_example():
    need_install()
    if "example_dir" not in S:
        t.skip("the example did not build")


@t.test
def installed_ksockd_lists_the_example_and_the_bundled_plugins():
    need_example()
    cfg = example_config("list.json", [])
    r = ksockd("--list-plugins", "--config", cfg)
    assert r.returncode == 0, r.stderr
    plugindir = pkg("--variable=plugindir")
    # The example from plugin_path; the bundled sinks from the compiled-in
    # default directory (no $KSOCK_PLUGIN_PATH in this environment).
    # Built against the installed headers: the ABI the installed ksockd reports.
    abi = re.search(r"plugin ABI (\d+\.\d+)", ksockd("--version").stdout).group(1)
    assert re.search(r"^logsink\s+example\s+1\.0\.0\s+ABI " + re.escape(abi) + r"\s+" + re.escape(S["example_dir"]), r.stdout, re.M), r.stdout
    assert re.search(r"^logsink\s+file\s+.*" + re.escape(plugindir), r.stdout, re.M), r.stdout
    assert "refused" not in r.stderr, r.stderr
    d = ksockd("--describe-plugin", "example", "--config", cfg)
    assert d.returncode == 0, d.stderr
    for opt in ("prefix", "path", "stream", "numbered", "enum:stderr|stdout"):
        assert opt in d.stdout, d.stdout


@t.test
def check_config_validates_the_example_options():
    need_example()
    good = example_config("good.json", [{"type": "example", "prefix": "[ok]"}])
    r = ksockd("--check-config", good)
    assert r.returncode == 0, r.stderr
    cases = [
        ({"type": "example", "prefx": "x"}, 'logsink "example": key "prefx": unknown key'),
        ({"type": "example", "numbered": "yes"}, 'key "numbered": expected true or false, got string'),
        ({"type": "example", "stream": "stdlog"}, 'key "stream": "stdlog" is not one of: stderr, stdout'),
    ]
    for sink, want in cases:
        cfg = example_config("bad.json", [sink])
        r = ksockd("--check-config", cfg)
        assert r.returncode == 2, (sink, r.returncode, r.stderr)
        assert want in r.stderr and f"{cfg}:" in r.stderr, (sink, r.stderr)
    # What only create() can find stops --config, before start-up.
    nodir = os.path.join(S["tmp"], "no", "such", "dir", "a.log")
    cfg = example_config("nodir.json", [{"type": "example", "path": nodir}])
    r = ksockd("--config", cfg)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f'ksockd: logsink "example": cannot open "{nodir}": No such file or directory' in r.stderr, r.stderr
    assert "ksockd started" not in r.stderr + r.stdout


@t.test
def installed_ksockd_logs_through_the_example():
    need_example()
    log = os.path.join(S["tmp"], "example.log")
    filelog = os.path.join(S["tmp"], "file.log")
    cfg = example_config("run.json", [
        {"type": "example", "name": "numbered", "prefix": "[sdk]", "path": log, "format": "json"},
        {"type": "example", "name": "plain", "prefix": "[plain]", "stream": "stdout",
         "numbered": False},
        # A bundled plugin from the installed default directory, next to it.
        {"type": "file", "path": filelog, "flush_interval": "10ms"},
    ])
    p = subprocess.Popen([S["ksockd"], "--config", cfg], env=sdk_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 20
        while "ksockd started" not in read(log) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.02)
        assert "ksockd started" in read(log), f"no start-up record; exit {p.poll()}"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (p.returncode, err)
    lines = read(log).splitlines()
    # Numbered by this instance, in order, from 1; json as configured.
    assert [int(re.match(r"\[sdk\] #(\d+) \{", ln).group(1)) for ln in lines] == list(range(1, len(lines) + 1)), lines
    assert '"message":"ksockd started"' in lines[0], lines[0]
    assert '"message":"ksockd stopped"' in lines[-1], lines[-1]
    # The second instance: its own options and its own stream, text format.
    plain = [ln for ln in out.splitlines() if ln.startswith("[plain] ")]
    assert len(plain) == len(lines), (plain, lines)
    assert re.match(r"\[plain\] \S+Z INFO  ksockd: ksockd started", plain[0]), plain[0]
    assert "ksockd stopped" in read(filelog), read(filelog)


@t.test
def csv_serializer_builds_and_installs_with_pkg_config_only():
    need_install()
    work = os.path.join(S["tmp"], "csv-src")
    shutil.copytree(CSV_EXAMPLE, work, ignore=shutil.ignore_patterns("build"))
    r = must(["make", "-C", work], env=sdk_env())
    assert "warning" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    must(["make", "-C", work, "install"], env=sdk_env())
    so = os.path.join(pkg("--variable=plugindir"), "serializer_csv.so")
    syms = must(["nm", "-D", "--defined-only", so]).stdout.split()
    exported = [s for s in syms if not re.fullmatch(r"[0-9a-f]+|[A-Za-z]", s)]
    assert exported == ["ksock_plugin_entry"], f"exports {exported}"
    S["csv"] = so


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@t.test
def installed_ksockd_serves_the_csv_serializer_without_naming_it():
    """A config with a listener, the embedded cluster and auth none: nothing about csv."""
    need_install()
    if "csv" not in S:
        t.skip("the csv example did not build")
    if not HAVE_WS:
        t.skip("python websockets not available (tools/setup --test)")
    port = free_port()
    cfg = write(os.path.join(S["tmp"], "csv.json"), json.dumps({
        "kafka": {"bootstrap.servers": "embedded"},
        "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
        "auth": {"plugin": "none"}}))
    errpath = os.path.join(S["tmp"], "csv.stderr")
    with open(errpath, "w") as err:
        p = subprocess.Popen([S["ksockd"], "--config", cfg], env=sdk_env(),
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        end = time.monotonic() + 30
        while "listening for WebSocket clients" not in read(errpath):
            assert p.poll() is None, f"ksockd exited {p.returncode}:\n{read(errpath)}"
            assert time.monotonic() < end, "ksockd did not start:\n" + read(errpath)
            time.sleep(0.05)

        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/",
                                          subprotocols=["ksock.v1.csv"]) as ws:
                out = [ws.subprotocol]
                for frame in ("publish,1,sensors,,,,dev-7,21.5,,", "publish,2,sensors",
                              "hello,3,,,,,,,,", "ping,4,,,,,,,,",
                              # a bad number, and one that wraps to partition 1 as an int32
                              "publish,5,sensors,x,,,,v,,", "publish,6,sensors,-4294967295,,,,v,,"):
                    await ws.send(frame)
                    out.append(await asyncio.wait_for(ws.recv(), 20))
                return out
        sub, ack, short, unknown, pong, badnum, wrap = asyncio.run(asyncio.wait_for(go(), 60))
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0, read(errpath)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log = read(errpath)
    assert sub == "ksock.v1.csv", sub
    served = re.search(r"serializers served.*", log)
    assert served and "ksock.v1.csv" in served.group(0), log
    assert re.fullmatch(r"ack,1,sensors,\d+,\d+,,,,,", ack), ack
    f = short.split(",")
    assert len(f) == 10 and f[0] == "error" and f[8] == "-19", short
    assert f[9].startswith("csv%3A"), short
    f = unknown.split(",")
    assert f[0] == "error" and f[8] == "-17" and f[9].startswith("csv%3A"), unknown
    assert pong == "pong,4,,,,,,,,", pong
    for frame, id_ in ((badnum, "5"), (wrap, "6")):  # the id decoded before the fault is echoed
        f = frame.split(",")
        assert f[:2] == ["error", id_] and f[8] == "-19", frame
        assert f[9].startswith("csv%3A%20field%204%20"), frame


# ---- The service side of the install: layout, man pages, the systemd unit ----

def multiarch():
    r = run(["cc", "-print-multiarch"])
    return r.stdout.strip() if r.returncode == 0 else ""


@t.test
def installed_layout_is_debian_like():
    need_install()
    p = S["prefix"]
    arch = multiarch()
    if arch:  # meson's Debian libdir: what dpkg's multiarch layout expects
        assert os.path.relpath(S["libdir"], p) == f"lib/{arch}", S["libdir"]
    execs = ["sbin/ksockd", "bin/ksock"]
    files = ["include/ksock/ksock.h", "share/ksock/ksock.proto",
             "share/man/man8/ksockd.8", "share/man/man1/ksock.1", "share/man/man5/ksockd.json.5",
             "lib/systemd/system/ksockd.service", "share/doc/ksock/examples/ksockd.json"]
    missing = [f for f in execs if not os.access(os.path.join(p, f), os.X_OK)]
    missing += [f for f in files if not os.path.isfile(os.path.join(p, f))]
    hint = " (no scdoc: tools/setup installs it)" if shutil.which("scdoc") is None else ""
    assert not missing, f"not installed: {missing}{hint}"
    assert not os.path.exists(os.path.join(p, "bin", "ksockd")), "ksockd in bin as well as sbin"
    # The shared library under its soname, which is what a program built against it loads.
    so = os.path.join(S["libdir"], "libksock.so")
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.+)\]",
                       must(["readelf", "-d", so]).stdout).group(1)
    assert re.fullmatch(r"libksock\.so\.\d+", soname), soname
    assert os.path.realpath(os.path.join(S["libdir"], soname)) == os.path.realpath(so), soname
    needed = must(["readelf", "-d", os.path.join(p, "bin", "ksock")]).stdout
    assert f"[{soname}]" in needed, needed
    # The example configuration is one the installed ksockd accepts.
    ex = os.path.join(p, "share/doc/ksock/examples/ksockd.json")
    r = ksockd("--check-config", ex)
    assert r.returncode == 0, r.stderr


def man_text(page):
    """A man page of the prefix rendered by man(1), one line per paragraph line, no hyphenation."""
    section = page.rsplit(".", 1)[1]
    path = os.path.join(S["prefix"], "share", "man", f"man{section}", page)
    r = run(["man", "--warnings", "--nh", "--nj", "-l", path],
            env=dict(sdk_env(), MANWIDTH="250", LANG="C.UTF-8"))
    assert r.returncode == 0, (page, r.stderr)
    assert r.stderr.strip() == "", f"{page}: groff warnings:\n{r.stderr}"
    return r.stdout


@t.test
def man_pages_render_and_match_the_programs():
    need_install()
    if shutil.which("man") is None:
        t.skip("man not found (Debian package man-db)")
    texts = {page: man_text(page) for page in ("ksockd.8", "ksock.1", "ksockd.json.5")}
    for page, text in texts.items():
        name = page.rsplit(".", 1)[0]
        for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
            assert re.search(rf"^{heading}$", text, re.M), (page, heading)
        assert re.search(rf"^\s+{re.escape(name)} - ", text, re.M), (page, text[:300])
    # Every option the programs print in --help has its entry; the verbs' own --help too,
    # for the verbs this ksock has (it answers their --help with exit 0).
    ksock = os.path.join(S["prefix"], "bin", "ksock")
    helps = [("ksockd.8", must([S["ksockd"], "--help"], env=sdk_env()).stdout),
             ("ksock.1", must([ksock, "--help"], env=sdk_env()).stdout)]
    for verb in ("tail", "publish"):
        r = run([ksock, verb, "--help"], env=sdk_env())
        if r.returncode == 0:
            helps.append(("ksock.1", r.stdout))
    for page, help_text in helps:
        opts = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text))
        assert opts, help_text
        # An entry: a line of the page that starts with an option and names this one.
        absent = sorted(o for o in opts if not re.search(
            rf"^[ \t]+(?=-)[^\n]*(?<![\w-]){re.escape(o)}(?![\w-])", texts[page], re.M))
        assert not absent, f"{page} has no entry for {absent} (from --help)"
    for verb in ("connect", "tail", "publish", "token"):
        assert re.search(rf"^\s+ksock {verb} ", texts["ksock.1"], re.M), verb
    for verb in ("generate", "validate", "authenticate"):
        assert re.search(rf"^\s+{verb} AUTH_OPTIONS ", texts["ksock.1"], re.M), verb
    # FILES names this install's paths, not the source tree's or another prefix's.
    assert os.path.join(S["prefix"], "etc", "ksock", "ksockd.json") in texts["ksockd.8"]
    assert pkg("--variable=plugindir") in texts["ksockd.8"]
    assert os.path.join(S["prefix"], "etc", "ksock", "ksockd.json") in texts["ksockd.json.5"]


def unit_service_keys():
    path = os.path.join(S["prefix"], "lib", "systemd", "system", "ksockd.service")
    keys, section = {}, None
    for line in read(path).splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return path, {k: v[-1] for k, v in keys.items()}


def seconds(v):
    m = re.fullmatch(r"(\d+)(ms|s|min)?", v)
    assert m, v
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, None: 1}[m.group(2)]


@t.test
def systemd_unit_is_hardened_and_verifies():
    need_install()
    path, k = unit_service_keys()
    conf = os.path.join(S["prefix"], "etc", "ksock", "ksockd.json")
    assert k.get("ExecStart") == f"{S['ksockd']} --config {conf}", k.get("ExecStart")
    assert k.get("ExecReload") == "/bin/kill -HUP $MAINPID", k.get("ExecReload")
    want = {"Type": "notify", "DynamicUser": "yes", "ProtectSystem": "strict",
            "NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "LogsDirectory": "ksock"}
    wrong = {key: k.get(key) for key, v in want.items() if k.get(key) != v}
    assert not wrong, f"unit settings differ: {wrong}"
    assert int(k["LimitNOFILE"]) >= 65536, k["LimitNOFILE"]
    # Longer than the drain (bridge.drain_timeout 5s) + shutdown_grace 1s + producer flush 5s.
    assert seconds(k["TimeoutStopSec"]) > 11, k["TimeoutStopSec"]
    if shutil.which("systemd-analyze") is None:
        t.skip("systemd-analyze not found (Debian package systemd): the unit is not verified")
    # verify also runs `man` for each Documentation= page: MANPATH is the prefix's.
    env = dict(os.environ, MANPATH=os.path.join(S["prefix"], "share", "man"))
    r = run(["systemd-analyze", "verify", path], env=env, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", (r.returncode, r.stderr)
    r = run(["systemd-analyze", "security", "--offline=yes", path], env=env, timeout=60)
    m = re.search(r"Overall exposure level for ksockd\.service: ([\d.]+)", r.stdout)
    if m is None:
        print(f"# systemd-analyze security --offline not available: {r.stderr.strip()[:200]}")
        return
    print(f"# systemd-analyze security: exposure {m.group(1)}")
    assert float(m.group(1)) < 2.0, r.stdout[-3000:]


def notify_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock


def notified(sock, what):
    try:
        data = sock.recv(4096).decode()
    except socket.timeout:
        raise AssertionError(f"no sd_notify message (waiting for {what})")
    msg = dict(line.split("=", 1) for line in data.splitlines() if line)
    assert msg.get(what) == "1", (what, msg)
    return msg


@t.test
def unit_commands_run_as_written():
    """ExecStart and ExecReload of the installed unit, as systemd would run them."""
    need_install()
    path, k = unit_service_keys()
    argv = shlex.split(k["ExecStart"])
    conf = argv[argv.index("--config") + 1]
    port = free_port()
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    write(conf, json.dumps({
        "kafka": {"bootstrap.servers": "embedded"},
        "websocket": {"listeners": [{"address": "127.0.0.1", "port": port}]},
        "auth": {"plugin": "none"},
        "log": {"sinks": [{"type": "console"}]}}))
    sock = notify_socket(os.path.join(S["tmp"], "notify"))
    errpath = os.path.join(S["tmp"], "unit.stderr")
    with open(errpath, "w") as err:
        p = subprocess.Popen(argv, env=dict(sdk_env(), NOTIFY_SOCKET=sock.getsockname()),
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        notified(sock, "READY")
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        reload = [a.replace("$MAINPID", str(p.pid)) for a in shlex.split(k["ExecReload"])]
        must(reload)
        notified(sock, "RELOADING")
        notified(sock, "READY")
        assert k.get("KillSignal", "SIGTERM") == "SIGTERM"
        p.send_signal(signal.SIGTERM)
        notified(sock, "STOPPING")
        assert p.wait(timeout=seconds(k["TimeoutStopSec"])) == 0, read(errpath)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
    assert "log sinks reloaded" in read(errpath), read(errpath)


if __name__ == "__main__":
    try:
        t.run()
    finally:
        if S.get("tmp") and not os.environ.get("KSOCK_KEEP_TMP"):
            shutil.rmtree(S["tmp"], ignore_errors=True)
