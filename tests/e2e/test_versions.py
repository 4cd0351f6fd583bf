"""API versions (Segment, Query and Header schemes) and revisions
(`;rev=N`, one current), routed as APIM does."""

import json

import pytest

from conftest import basic_config
from mgmt_helpers import TOKEN, Mgmt, mgmt_config


def version_api(backend, api_id, version, vset, rev=None, current=True, path="things"):
    a = {"id": api_id, "path": path, "serviceUrl": backend.url + "/" + api_id,
         "subscriptionRequired": False,
         "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}
    if vset:
        a["apiVersionSetId"] = vset
    if version is not None:
        a["apiVersion"] = version
    if rev is not None:
        a["apiRevision"] = rev
        a["isCurrent"] = current
    return a


def where(backend, p, path, headers=None):
    """Which API served: the backend path starts with the API's id.  A refusal
    (its status) must not have reached the backend, an answer must have."""
    backend.clear()
    status, _, body = p.request("GET", path, headers=headers or {})
    if status != 200:
        assert backend.last() is None, (path, status)
        return status
    assert backend.last() is not None, (path, "a 200 the backend never saw")
    return backend.last().target.split("/")[1]


@pytest.mark.parametrize("scheme", ["Segment", "Query", "Header"])
def test_versions(backend, portico, scheme):
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "displayName": "Things", "versioningScheme": scheme,
                              "versionQueryName": "api-version", "versionHeaderName": "Api-Version"}]
    cfg["apis"] += [version_api(backend, "orig", None, "vs"),
                    version_api(backend, "v1", "v1", "vs"),
                    version_api(backend, "v2", "v2", "vs")]
    p = portico(cfg)
    if scheme == "Segment":
        assert where(backend, p, "/things/v1/x") == "v1"
        assert where(backend, p, "/things/v2/x") == "v2"
        assert where(backend, p, "/things/x") == "orig"  # the original answers without a version
        assert where(backend, p, "/things/v3/x") == "orig"  # no such version: the original's operations
    elif scheme == "Query":
        assert where(backend, p, "/things/x?api-version=v1") == "v1"
        assert where(backend, p, "/things/x?a=b&api-version=v2") == "v2"
        assert where(backend, p, "/things/x") == "orig"
        assert where(backend, p, "/things/x?api-version=v3") == 404
    else:
        assert where(backend, p, "/things/x", {"Api-Version": "v1"}) == "v1"
        assert where(backend, p, "/things/x", {"Api-Version": "v2"}) == "v2"
        assert where(backend, p, "/things/x") == "orig"
        assert where(backend, p, "/things/x", {"Api-Version": "v9"}) == 404
    e = p.access_entries(wait_for=4)
    assert {x.get("api") for x in e} >= {"v1", "v2", "orig"}


def test_query_versions_without_original_need_a_version(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "versioningScheme": "Query"}]
    cfg["apis"] += [version_api(backend, "v1", "v1", "vs"), version_api(backend, "v2", "v2", "vs")]
    p = portico(cfg)
    status, _, body = p.request("GET", "/things/x")
    assert status == 404 and json.loads(body) == {"statusCode": 404, "message": "Resource not found"}
    assert where(backend, p, "/things/x?api-version=v2") == "v2"


def test_revisions(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"] += [version_api(backend, "r1", None, None, rev="1", current=False),
                    version_api(backend, "r2", None, None, rev="2", current=True),
                    version_api(backend, "r3", None, None, rev="3", current=False)]
    p = portico(cfg)
    assert where(backend, p, "/things/x") == "r2"  # the current revision
    assert where(backend, p, "/things;rev=1/x") == "r1"
    assert where(backend, p, "/things;rev=2/x") == "r2"
    assert where(backend, p, "/things;rev=3/x") == "r3"
    assert where(backend, p, "/things;rev=4/x") == 404
    # making revision 3 current is a rollforward; the old current one stays reachable by number
    cfg["apis"][-1]["isCurrent"] = True
    cfg["apis"][-2]["isCurrent"] = False
    assert p.reload(cfg)
    assert where(backend, p, "/things/x") == "r3"
    assert where(backend, p, "/things;rev=2/x") == "r2"


def test_clashing_paths_are_refused(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"] += [version_api(backend, "a", None, None, rev="1", current=False),
                    version_api(backend, "b", None, None, rev="1", current=False)]
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "answers at '/things;rev=1'" in out, out
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "versioningScheme": "Header"}]
    cfg["apis"] += [version_api(backend, "a", "v1", "vs"), version_api(backend, "b", "v1", "vs")]
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0 and "path 'things' with version 'v1' is already used by API 'a'" in out, out


def test_versions_through_the_management_api(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apiVersionSets/vs", {"displayName": "Things", "versioningScheme": "Header",
                                      "versionHeaderName": "X-Version"})
    for api_id, ver in (("v1", "v1"), ("v2", "v2")):
        m.ok("PUT", "apis/" + api_id, {"path": "things", "serviceUrl": backend.url + "/" + api_id,
                                       "subscriptionRequired": False, "apiVersionSetId": "vs", "apiVersion": ver})
        m.ok("PUT", "apis/%s/operations/all" % api_id, {"method": "*", "urlTemplate": "/*"})
    assert where(backend, p, "/things/x", {"X-Version": "v2"}) == "v2"
    assert where(backend, p, "/things/x", {"X-Version": "v1"}) == "v1"
    st, _, err = m.call("PUT", "apis/v3", {"path": "things", "serviceUrl": backend.url,
                                           "apiVersionSetId": "vs", "apiVersion": "v2"})
    assert st == 400 and "with version 'v2' is already used" in json.dumps(err)
    st, _, err = m.call("DELETE", "apiVersionSets/vs")
    assert st == 409


def test_protocols_limit_the_scheme(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"] += [dict(version_api(backend, "secure", None, None, path="secure"), protocols=["https"]),
                    dict(version_api(backend, "plain", None, None, path="plain"), protocols=["http"])]
    p = portico(cfg)
    status, _, body = p.request("GET", "/secure/x")
    assert status == 404 and json.loads(body)["message"] == "Resource not found"
    assert where(backend, p, "/plain/x") == "plain"


def test_context_api_knows_its_version_and_revision(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "versioningScheme": "Segment"}]
    cfg["apis"] += [version_api(backend, "r1", "v1", "vs", rev="1", current=False),
                    version_api(backend, "r2", "v1", "vs", rev="2", current=True)]
    cfg["policies"] = {"inbound": [{"set-header": {"name": "X-Api", "value":
        "@(context.api.id .. '|' .. tostring(context.api.version) .. '|' .. context.api.revision .. '|' .. "
        "tostring(context.api.isCurrentRevision) .. '|' .. tostring(context.api.versionSetId))"}}]}
    p = portico(cfg)
    assert p.request("GET", "/things/v1/x")[0] == 200
    assert backend.last().header("X-Api") == "r2|v1|2|true|vs"
    assert p.request("GET", "/things/v1;rev=1/x")[0] == 200
    assert backend.last().header("X-Api") == "r1|v1|1|false|vs"
    assert p.request("GET", "/echo/x")[0] == 200
    assert backend.last().header("X-Api") == "echo|nil|1|true|nil"


@pytest.mark.parametrize("scheme", ["Segment", "Query", "Header"])
@pytest.mark.parametrize("nversions", [1, 2])
def test_versions_without_original_one_or_several(backend, portico, scheme, nversions):
    """Issue 16: with no original, a request without a version or with
    another version is 404 whether the set has one version or several (a
    lone Query/Header version once answered everything)."""
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "versioningScheme": scheme,
                              "versionQueryName": "api-version", "versionHeaderName": "Api-Version"}]
    cfg["apis"] += [version_api(backend, "v%d" % n, "v%d" % n, "vs") for n in range(1, nversions + 1)]
    # an older revision of v1, reached by its number together with its version
    cfg["apis"] += [version_api(backend, "v1r0", "v1", "vs", rev="0", current=False)]
    p = portico(cfg)

    def at(version=None, rev=""):
        if scheme == "Segment":
            return where(backend, p, "/things/%s%s/x" % (version, rev) if version else "/things%s/x" % rev)
        if scheme == "Query":
            return where(backend, p, "/things%s/x" % rev + ("?api-version=" + version if version else ""))
        return where(backend, p, "/things%s/x" % rev, {"Api-Version": version} if version else {})

    for n in range(1, nversions + 1):
        assert at("v%d" % n) == "v%d" % n
    assert at() == 404
    assert at("v7") == 404
    assert at("v9") == 404
    assert at("V1") == 404  # versions are matched exactly
    assert at("v1", ";rev=0") == "v1r0"
    assert at("v9", ";rev=0") == 404
    if scheme != "Segment":
        assert at(None, ";rev=0") == 404  # the revision belongs to version v1
    if scheme == "Query":  # an empty parameter is not the original either
        assert where(backend, p, "/things/x?api-version=") == 404
    e = p.access_entries(wait_for=nversions + 1)
    assert {x.get("api") for x in e} >= {"v1", "v1r0"}


@pytest.mark.parametrize("scheme", ["Query", "Header"])
def test_current_revisions_of_several_versions_answer_by_number(backend, portico, scheme):
    """Each current revision answers at ;rev=N with its own number and
    version (the alias once belonged to the first version of the path and
    served whichever version was asked for), beside another version's
    non-current revision of the same number."""
    cfg = basic_config(backend.url)
    cfg["apiVersionSets"] = [{"id": "vs", "versioningScheme": scheme}]
    cfg["apis"] += [version_api(backend, "a1", "v1", "vs", rev="1", current=True),
                    version_api(backend, "b3", "v2", "vs", rev="3", current=True),
                    version_api(backend, "b1", "v2", "vs", rev="1", current=False)]
    p = portico(cfg)

    def at(rev, version):
        if scheme == "Query":
            return where(backend, p, "/things%s/x" % rev + ("?api-version=" + version if version else ""))
        return where(backend, p, "/things%s/x" % rev, {"Api-Version": version} if version else {})

    assert at("", "v1") == "a1" and at("", "v2") == "b3"
    assert at(";rev=1", "v1") == "a1"
    assert at(";rev=3", "v2") == "b3"
    assert at(";rev=1", "v2") == "b1"  # v2's older revision, at the same number as v1's current one
    assert at(";rev=3", "v1") == 404
    assert at(";rev=2", "v1") == at(";rev=2", "v2") == 404
    assert at(";rev=1", None) == at(";rev=3", None) == at(";rev=1", "v9") == 404
