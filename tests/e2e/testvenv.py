"""Python packages for end-to-end tests live in a project venv (tools/setup --test,
from tests/requirements.txt). A test that needs some calls need() first: when
the running interpreter lacks them, the test re-runs itself under
$KSOCK_TEST_VENV/bin/python; when that lacks them too, need() answers False and
the test reports its cases skipped."""
import importlib
import os
import sys


def need(*modules):
    """True when every module imports, re-executing under the venv once if needed."""
    try:
        for m in modules:
            importlib.import_module(m)
        return True
    except ImportError:
        pass
    venv = os.environ.get("KSOCK_TEST_VENV", os.path.expanduser("~/.cache/ksock/venv"))
    py = os.path.join(venv, "bin", "python")
    if os.path.exists(py) and os.environ.get("KSOCK_VENV_REEXEC") != "1":
        os.environ["KSOCK_VENV_REEXEC"] = "1"
        os.execv(py, [py] + sys.argv)
    return False
