"""docs/policies.md shows the YAML shape of every statement. Each shape is
given to a real gateway (`portico -t`) in a section and at a scope the
policy allows: the gateway must accept its structure -- every attribute
name, every nesting, every required attribute -- so the reference cannot
show a shape the gateway refuses. The placeholders (<string>, <integer>,
...) may be refused as values; a statement written in full (choose) must
be accepted as it is."""

import os
import re
import subprocess

import pytest
import yaml

from conftest import BIN, basic_config, to_yaml

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(TOP, "docs", "policies.md")

# what says the structure is wrong (as opposed to a placeholder refused as a value)
STRUCTURAL = ("has no attribute", "takes no attributes", "needs the attribute", "expects a map",
              "takes one value, not a list", "unknown policy '", "is not allowed in the", "expected a list",
              "a statement is a one-key map", "expected {when", "expects a value, found")
ANY_STATEMENT = {"set-variable": {"name": "shape", "value": "1"}}


def shapes():
    with open(DOC) as f:
        text = f.read()
    out = []
    for m in re.finditer(r"\n## ([a-z0-9-]+)\n\n(.*?)(?=\n## |\Z)", text, re.S):
        name, body = m.group(1), m.group(2)
        block = re.search(r"```yaml\n(.*?)```", body, re.S)
        sections = re.search(r"Sections:([a-z -]+)\.", body)
        scopes = re.search(r"Scopes:([a-z ]+)\.", body)
        out.append((name, block.group(1) if block else None, sections.group(1).split() if sections else [],
                    scopes.group(1).split() if scopes else None))
    return out


def fill(value):
    """The shape as a document: <statement> becomes a real statement."""
    if value == "<statement>":
        return dict(ANY_STATEMENT)
    if isinstance(value, list):
        return [fill(v) for v in value]
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    return value


SHAPES = shapes()


def test_every_policy_shows_its_shape():
    assert len(SHAPES) > 40
    missing = [name for name, block, _, _ in SHAPES if block is None]
    assert missing == [], missing
    assert any(name == "choose" and "when:" in block and "otherwise:" in block for name, block, _, _ in SHAPES)


@pytest.mark.parametrize("name, block, sections, scopes", SHAPES, ids=[s[0] for s in SHAPES])
def test_the_gateway_accepts_the_shape(backend, portico, name, block, sections, scopes):
    items = yaml.safe_load(block)
    assert isinstance(items, list) and len(items) == 1 and list(items[0]) == [name], block
    statement = fill(items[0])
    section = sections[0]
    cfg = basic_config(backend.url)
    cfg["lua"] = {"policyPath": [os.path.join(TOP, "policies")]}
    doc = {section: ["base", statement] if section != "on-error" else [statement]}
    if scopes is None or "api" in scopes:
        cfg["apis"][0]["policies"] = doc
    else:
        cfg["policies"] = {section: [statement]}
    code, out = portico(cfg, start=False).check()
    lines = [x for x in out.splitlines() if "portico.yaml:" in x]
    wrong = [x for x in lines if any(s in x for s in STRUCTURAL)]
    assert wrong == [], (block, out)
    if "<" not in block:  # written in full: accepted as it is
        assert code == 0, (block, out)
