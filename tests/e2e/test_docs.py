"""Documentation that is generated must match what the binary generates."""

import os
import re
import subprocess
import sys

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


CONFIG_DOC = os.path.join(TOP, "docs", "configuration.md")
BEGIN = "<!-- BEGIN GENERATED: portico --config-reference -->\n"
END = "<!-- END GENERATED -->\n"


def config_reference(binary=BIN, flag="--config-reference"):
    out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def test_config_reference_is_current():
    rc, ref, err = config_reference()
    assert rc == 0, err
    assert err == ""
    with open(CONFIG_DOC) as f:
        doc = f.read()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1, "docs/configuration.md: one generated section"
    start = doc.index(BEGIN) + len(BEGIN)
    committed = doc[start:doc.index(END, start)]
    assert ref == committed, ("the key reference in docs/configuration.md is stale: run "
                              "PORTICO_BIN=build/portico python3 tests/e2e/test_docs.py --write")
    # -K is the same flag
    assert config_reference(flag="-K")[1] == ref


def test_config_reference_documents_every_key(tmp_path):
    rc, ref, err = config_reference()
    assert rc == 0, err
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]*) \| (.*) \| (.*) \|$", ref, re.M)
    paths = [r[0] for r in rows]
    # keys of every table, the nested ones by their full path
    for key in ("listen[]", "listen[].certificates[].certificate", "listen[].tls.minVersion", "workers",
                "limits.headerSize", "limits.counterKeys", "timeouts.bodyIdle", "upstream.tls.ciphersuites",
                "log.accessFlush", "lua.policyPath", "management.maxBodySize", "trustedProxies",
                "apis[].subscriptionKeyParameterNames.query", "apis[].operations[].urlTemplate",
                "products[].subscriptionsLimit", "groups[].type", "users[].email", "subscriptions[].endDate",
                "namedValues[].secret", "policyFragments[].value", "backends[].url", "workspaces[].policies",
                "apiVersionSets[].versioningScheme"):
        assert key in paths, key
    for path, typ, default, doc in rows:
        assert typ.strip(), path
        assert doc.strip(), path
    # defaults the code applies, as the reference states them
    by_path = {r[0]: r for r in rows}
    assert by_path["limits.headerSize"][2] == "`32k`"
    assert by_path["timeouts.keepalive"][2] == "`75s`"
    assert by_path["log.level"][1] == "one of `error`, `warn`, `info`, `debug`"
    assert by_path["listen[]"][2] == "required"
    # every top-level key the file accepts (the unknown-key message lists them) is in the reference
    conf = tmp_path / "bogus.yaml"
    conf.write_text("listen: ':1'\nbogus: 1\n")
    out = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    listed = re.search(r"expected one of: ([^)]*)\)", out.stderr).group(1).split(", ")
    assert listed and all(k in paths or k + "[]" in paths for k in listed), listed


def write_config_reference(binary):
    rc, ref, err = config_reference(binary)
    if rc != 0:
        sys.exit(err)
    with open(CONFIG_DOC) as f:
        doc = f.read()
    start = doc.index(BEGIN) + len(BEGIN)
    doc = doc[:start] + ref + doc[doc.index(END, start):]
    with open(CONFIG_DOC, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    # PORTICO_BIN=build/portico python3 tests/e2e/test_docs.py --write: regenerates the key reference
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: PORTICO_BIN=build/portico python3 tests/e2e/test_docs.py --write")
    write_config_reference(BIN)


# ------------------------------------------------------------ the layout

def core_files():
    out = []
    for d, _, files in os.walk(os.path.join(TOP, "core")):
        if "llhttp" in d:
            continue
        for f in files:
            if f.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(d, f), TOP))
    return sorted(out)


def test_architecture_lists_every_core_file():
    with open(os.path.join(TOP, "docs", "architecture.md")) as f:
        doc = f.read()
    rows = re.findall(r"^\| `(core/[^`]+)`(?:, `(\.h)`)? \|", doc, re.M)
    listed = set()
    for path, h in rows:
        listed.add(path)
        if h:
            listed.add(path[:-2] + ".h")
    missing = [p for p in core_files() if p not in listed]
    gone = [p for p in listed if not os.path.exists(os.path.join(TOP, p))]
    assert not missing, "docs/architecture.md does not list: %s" % ", ".join(missing)
    assert not gone, "docs/architecture.md lists files that do not exist: %s" % ", ".join(gone)


def test_no_file_calls_into_a_higher_layer():
    """scripts/layers on the objects this binary was built from."""
    build = os.path.dirname(os.path.abspath(BIN))
    if not os.path.isdir(os.path.join(build, "core", "base")):
        import pytest
        pytest.skip("the binary was not built in a tree with core/<layer>/ objects")
    r = subprocess.run([sys.executable, os.path.join(TOP, "scripts", "layers"), build], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no upward call" in r.stdout
