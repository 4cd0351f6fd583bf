"""Documentation that is generated must match what the binary generates."""

import os
import subprocess

from conftest import BIN

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_policy_reference_is_current():
    out = subprocess.run([BIN, "-P", "-c", os.path.join(TOP, "conf", "portico.yaml")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    with open(os.path.join(TOP, "docs", "policies.md")) as f:
        committed = f.read()
    assert out.stdout == committed, "docs/policies.md is stale: run ./portico -P -c conf/portico.yaml > docs/policies.md"
    # every policy of the transformation family and the core is documented
    for name in ("set-header", "rewrite-uri", "xml-to-json", "choose", "retry", "forward-request", "add-greeting"):
        assert "\n## %s\n" % name in committed


def test_default_config_is_valid():
    out = subprocess.run([BIN, "-t", "-c", os.path.join(TOP, "conf", "portico.yaml")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
