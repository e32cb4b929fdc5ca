#!/usr/bin/env python3
"""Count test results across meson runs and TAP files; print "N passed, N failed".

Meson's own summary counts a test program once. Our programs speak TAP, so
each "ok"/"not ok" line is a test here; a program that died without
reporting a failing TAP line still counts as one failure.
"""
import json
import re
import sys

TAP = re.compile(r"^(not )?ok \d+\b(.*)$")


def count_tap(text, name, out):
    seen = False
    for line in text.splitlines():
        m = TAP.match(line)
        if not m:
            continue
        seen = True
        if "# SKIP" in m.group(2).upper() or "# skip" in m.group(2):
            out["skipped"] += 1
        elif m.group(1):
            out["failed"] += 1
            out["failures"].append(f"{name}: {line.strip()}")
        else:
            out["passed"] += 1
    return seen


def main(argv):
    out = {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    extra = 0
    args = list(argv)
    if args[:1] == ["--extra-fail"]:
        extra = int(args[1])
        args = args[2:]
    for spec in args:
        label, _, path = spec.partition("=")
        if label.endswith("-tap"):
            with open(path, encoding="utf-8", errors="replace") as f:
                count_tap(f.read(), label, out)
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                t = json.loads(line)
                name = f"{label}/{t['name']}"
                res = t.get("result", "")
                fails_before = out["failed"]
                saw = count_tap(t.get("stdout", "") or "", name, out)
                if res in ("SKIP",):
                    out["skipped"] += 0 if saw else 1
                elif res in ("OK", "EXPECTEDFAIL"):
                    out["passed"] += 0 if saw else 1
                elif out["failed"] == fails_before:
                    # Crashed, timed out, or failed without a failing TAP line.
                    out["failed"] += 1
                    out["failures"].append(f"{name}: {res}")
    out["failed"] += extra
    if extra:
        out["failures"].append(f"{extra} build/setup step(s) failed (see above)")
    for f in out["failures"]:
        print(f"FAILED: {f}")
    print(f"{out['passed']} passed, {out['failed']} failed, {out['skipped']} skipped")
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
