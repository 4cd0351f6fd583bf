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

# what a refusal of a filled-in placeholder says: a value the gateway cannot
# use ("x" as a URL, 1 as a port...), never the structure
VALUE_REFUSALS = ("must be", "is not a", "not one of", "expects an integer", "is neither", "there is no",
                  "must start", "not supported", "is not checked", "unknown policy fragment", "not well-formed",
                  "cannot be loaded",
                  "cannot be a child of")  # <statement> filled with set-variable where few statements may go
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
    """The shape as a document: each placeholder becomes a value of its type."""
    if value == "<statement>":
        return dict(ANY_STATEMENT)
    if isinstance(value, list):
        return [fill(v) for v in value]
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        inner = value[1:-1]
        if inner == "integer":
            return 1
        if inner == "boolean":
            return True
        if inner == "string":
            return "x"
        return inner.split("|")[0]  # <a|b>: the first name
    return value


SHAPES = shapes()


def test_every_policy_shows_its_shape():
    assert len(SHAPES) > 40
    missing = [name for name, block, _, _ in SHAPES if block is None]
    assert missing == [], missing
    assert any(name == "choose" and "when:" in block and "otherwise:" in block for name, block, _, _ in SHAPES)


def places(sections, scopes):
    """Every section the policy allows, at the API scope and at the global one
    when it is allowed there."""
    for section in sections:
        for scope in ("api", "global"):
            if scopes is None or scope in scopes:
                yield section, scope


@pytest.mark.parametrize("name, block, sections, scopes", SHAPES, ids=[s[0] for s in SHAPES])
def test_the_gateway_accepts_the_shape(backend, portico, name, block, sections, scopes):
    items = yaml.safe_load(block)
    assert isinstance(items, list) and len(items) == 1 and list(items[0]) == [name], block
    statement = fill(items[0])
    assert sections, block
    for section, scope in places(sections, scopes):
        cfg = basic_config(backend.url)
        cfg["lua"] = {"policyPath": [os.path.join(TOP, "policies")]}
        if scope == "api":
            # base in inbound and outbound; the backend's base is a forward-request
            cfg["apis"][0]["policies"] = {section: ["base", statement] if section in ("inbound", "outbound")
                                          else [statement]}
        else:
            cfg["policies"] = {section: [statement]}
        code, out = portico(cfg, start=False).check()
        assert code in (0, 1), (section, scope, block, out)  # a refusal, never a crash
        if code == 0:
            continue
        lines = [x for x in out.splitlines() if re.search(r"portico\.yaml:\d+:\d+: ", x)]
        assert lines, (section, scope, block, out)  # a refusal says why
        structural = [x for x in lines if not any(v in x for v in VALUE_REFUSALS)]
        assert structural == [], (section, scope, block, out)
        assert "<" in block, (section, scope, block, out)  # written in full: accepted as it is
