"""The authorization matrix, generated from the management API's own route
table (its OpenAPI description): every role x every route and method x an
entity of the role's workspace, of another workspace and of the service.

AREAS says what each route touches; the rules below say which role may do
what with each area.  A route the API serves that AREAS does not list fails
the test, so a new route cannot ship without its authorization decided.
Allowed means anything but 401/403 (a 404 or a 400 is the route's own
answer); refused means 403."""

import re

import pytest

from mgmt_helpers import TOKEN, Mgmt, mgmt_config

ROLES = ["administrator", "reader", "workspaceContributor", "workspaceReader", "apiDeveloper", "apiProductManager"]

# route pattern (after /management/, without the workspaces/{workspaceId}/ prefix) -> area
AREAS = {
    "apis": "api", "apis/{id}": "api", "apis/{id}/operations": "api", "apis/{id}/operations/{sub}": "api",
    "apis/{id}/policies": "api", "apis/{id}/policies/policy": "api",
    "apis/{id}/operations/{sub}/policies": "api", "apis/{id}/operations/{sub}/policies/policy": "api",
    "products": "product", "products/{id}": "product", "products/{id}/apis": "product",
    "products/{id}/apis/{sub}": "product", "products/{id}/groups": "product", "products/{id}/groups/{sub}": "product",
    "products/{id}/policies": "product", "products/{id}/policies/policy": "product",
    "groups": "product", "groups/{id}": "product", "groups/{id}/users": "product", "groups/{id}/users/{sub}": "product",
    "users": "service", "users/{id}": "service",
    # a user's portal password (docs/management-api.md#portal-passwords): changes of a service-level entity
    "users/{id}/invitation": "service", "users/{id}/password": "service",
    "subscriptions": "product", "subscriptions/{id}": "product", "subscriptions/{id}/listSecrets": "secrets",
    "subscriptions/{id}/regeneratePrimaryKey": "product", "subscriptions/{id}/regenerateSecondaryKey": "product",
    "namedValues": "api", "namedValues/{id}": "api", "namedValues/{id}/listValue": "nvsecrets",
    "policyFragments": "api", "policyFragments/{id}": "api",
    "backends": "api", "backends/{id}": "api",
    "apiVersionSets": "api", "apiVersionSets/{id}": "api",
    "schemas": "api", "schemas/{id}": "api",
    "apis/{id}/schemas": "api", "apis/{id}/schemas/{sub}": "api",
    "policies": "service", "policies/policy": "service",
    "workspaces": "service", "workspaces/{id}": "service",
    "workspaces/{id}/policies": "wspolicy", "workspaces/{id}/policies/policy": "wspolicy",
    "tokens": "service", "tokens/{id}": "service",
    "loggers": "service", "loggers/{id}": "service",
    # the certificate store (docs/certificates.md): service level, like loggers; keys never shown
    "certificates": "service", "certificates/{id}": "service",
    "apply": "service", "export": "secrets", "openapi.json": "open",
    # request tracing: reads of an API (a token for it, its traces)
    "gateways/managed/listDebugCredentials": "api", "gateways/managed/listTrace": "api",
    "gateways/managed/traces/{id}": "api",
    # self-hosted gateways (docs/management-api.md#self-hosted-gateways): service level, like users; keys and
    # tokens are writes (administrators only)
    "gateways": "service", "gateways/{id}": "service", "gateways/{id}/apis": "service",
    "gateways/{id}/apis/{sub}": "service", "gateways/{id}/generateToken": "service",
    "gateways/{id}/listKeys": "service", "gateways/{id}/regenerateKey": "service", "gateways/{id}/nodes": "service",
    # the nodes' sync endpoints take only GatewayKey tokens: every user's bearer token is refused (401)
    "gateways/{id}/configuration": "gatewaykey", "gateways/{id}/heartbeat": "gatewaykey",
    # usage reports (docs/analytics.md): read-only figures of APIs; under a workspace, only its APIs'
    "reports/{id}": "api",
    # the developer portal's content (docs/portal.md#customization): service level, like users
    "portal/site": "service", "portal/pages": "service", "portal/pages/{id}": "service",
    "portal/media": "service", "portal/media/{id}": "service",
    "portal/revisions": "service", "portal/revisions/{id}": "service", "portal/revisions/{id}/restore": "service",
    "portal/templates": "service", "portal/templates/{id}": "service",
    # OpenID Connect identity providers (clientSecret is write-only: never in a read)
    "portal/identityProviders": "service", "portal/identityProviders/{id}": "service",
}

# reads of secrets are POSTs that change nothing
SECRET_READS = ("listSecrets", "listValue")
# ... and these need the right to change the API, even to read: a trace holds what policies set from
# secret named values
WRITE_READS = ("gateways/managed/traces/{id}",)


def allowed(role, area, write, scope, route):
    """scope: 'service' (a service-level route), 'own' / 'other' (the role's workspace or another)."""
    if area == "gatewaykey":
        return False
    if area == "open" or role == "administrator":
        return True
    secret = area in ("secrets", "nvsecrets")
    if role == "reader":
        return not write and not secret
    # workspace roles
    if scope == "service":
        if area == "wspolicy" or (route == "workspaces/{id}" and not write):
            return False  # only with the role's own workspace as {id}: see scope 'own' below
        return False
    if scope == "other":
        return False
    if route == "workspaces/{id}":
        return not write  # a workspace role reads its own workspace entity
    if area == "wspolicy":
        area = "api"
    if role == "workspaceContributor":
        return True
    if role == "workspaceReader":
        return not write and not secret
    if role == "apiDeveloper":
        return area in ("api", "nvsecrets") or (not write and area != "secrets")
    if role == "apiProductManager":
        return area in ("product", "secrets") or (not write and area != "nvsecrets")
    raise AssertionError(role)


@pytest.fixture
def world(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["apis"] = []
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "users/u1", {"email": "u1@example.com", "firstName": "U", "lastName": "One"})
    for ws, pre in ((None, "svc"), ("wsa", "a"), ("wsb", "b")):
        base = ""
        if ws:
            m.ok("PUT", "workspaces/" + ws, {"displayName": ws})
            base = "workspaces/%s/" % ws
        m.ok("PUT", base + "apis/%sapi" % pre, {"path": pre + "api", "serviceUrl": backend.url})
        m.ok("PUT", base + "apis/%sapi/operations/op" % pre, {"method": "GET", "urlTemplate": "/x"})
        m.ok("PUT", base + "products/%sprod" % pre, {"displayName": "P"})
        m.ok("PUT", base + "groups/%sgrp" % pre, {"displayName": "G"})
        m.ok("PUT", base + "subscriptions/%ssub" % pre, {"scope": "/apis/%sapi" % pre, "state": "active"})
        m.ok("PUT", base + "namedValues/%snv" % pre, {"displayName": pre + "nv", "value": "v", "secret": True})
        m.ok("PUT", base + "policyFragments/%sfrag" % pre, {"value": [{"set-header": {"name": "X", "value": "1"}}]})
        m.ok("PUT", base + "backends/%sbe" % pre, {"url": backend.url})
        m.ok("PUT", base + "apiVersionSets/%svs" % pre, {"displayName": "VS", "versioningScheme": "Segment"})
        m.ok("PUT", base + "schemas/%ssch" % pre, {"schemaType": "json", "document": {"type": "object"}})
    # loggers are service-level only (their files and receivers are the operator's)
    m.ok("PUT", "loggers/svclog", {"loggerType": "file", "file": {"path": "svclog.log"}})
    tokens = {"administrator": TOKEN}
    for r in ROLES[1:]:
        body = {"role": r}
        if r != "reader":
            body["workspace"] = "wsa"
        tokens[r] = m.ok("PUT", "tokens/t-" + r, body)["token"]
    return p, m, tokens


KIND_OF = {"apis": "api", "products": "prod", "groups": "grp", "subscriptions": "sub", "namedValues": "nv",
           "policyFragments": "frag", "backends": "be", "apiVersionSets": "vs", "schemas": "sch", "loggers": "log", "certificates": "cert", "users": None, "tokens": None,
           "workspaces": None}
SUB_OF = {"operations": "op", "apis": "api", "groups": "grp", "users": "u1", "schemas": "sch"}


def fill(route, pre, ws_id, write):
    """Concrete path for a route pattern: {id} and {sub} become fixtures of the
    scope (prefix pre) for reads and parents, a fresh id for the target of a write."""
    segs = route.split("/")
    top = segs[0]
    target_is_id = len(segs) == 2 and segs[1] == "{id}"
    out = []
    for i, s in enumerate(segs):
        if s == "{id}":
            if top == "workspaces":
                s = ws_id
            elif top == "reports":
                s = "byApi"
            elif write and target_is_id:
                s = "mx"
            elif top == "users":
                s = "u1"
            elif top == "tokens":
                s = "t-reader"
            elif top == "gateways":
                s = "0" * 32  # a trace id nobody has
            elif top == "portal":
                s = "1"  # a page, media or revision id (mostly absent: 404 is the route's own answer)
            else:
                s = pre + KIND_OF[top]
        elif s == "{sub}":
            kind = segs[i - 1]
            if write and i == len(segs) - 1:
                s = "mx"
            else:
                s = SUB_OF[kind] if kind in ("operations", "users") else pre + SUB_OF[kind]
        out.append(s)
    return "/".join(out)


def test_every_route_every_role_every_scope(world):
    p, m, tokens = world
    spec = m.ok("GET", "openapi.json")
    cases = []
    for path, item in spec["paths"].items():
        rel = path[len("/management/"):]
        ws_route = rel.startswith("workspaces/{workspaceId}/")
        route = rel[len("workspaces/{workspaceId}/"):] if ws_route else rel
        assert route in AREAS, "route %s has no authorization entry in AREAS" % path
        for method in item:
            if method == "parameters":
                continue
            method = method.upper()
            write = (method != "GET" and not route.endswith(SECRET_READS)) or route in WRITE_READS
            if ws_route:
                for scope, ws, pre in (("own", "wsa", "a"), ("other", "wsb", "b")):
                    cases.append((method, "workspaces/%s/%s" % (ws, fill(route, pre, ws, write)), route, scope,
                                  write))
            elif route.startswith("workspaces/{id}"):
                for scope, ws in (("own", "wsa"), ("other", "wsb")):
                    cases.append((method, fill(route, "svc", ws, write and route != "workspaces/{id}"), route,
                                  scope if route != "workspaces/{id}" or not write else "service", write))
            else:
                cases.append((method, fill(route, "svc", None, write), route, "service", write))
    assert len(cases) > 150
    failures = []
    for method, path, route, scope, write in cases:
        body = {} if method in ("PUT", "PATCH", "POST") else None
        for role in ROLES:
            st, _, out = m.call(method, path, body, token=tokens[role])
            want = allowed(role, AREAS[route], write, scope, route)
            got = st not in (401, 403)
            refusal = 401 if AREAS[route] == "gatewaykey" else 403
            if want != got or (not got and st != refusal):
                failures.append((role, method, path, st, out))
            if got and method == "PUT" and st in (200, 201) and path.rsplit("/", 1)[-1] == "mx":
                m.call("DELETE", path, token=TOKEN)  # undo, so every role meets the same state
    assert not failures, "\n".join(map(repr, failures[:40]))
    # the fixtures are intact: nobody's write went through where it should not have
    assert m.ok("GET", "workspaces/wsb/apis/bapi")["path"] == "bapi"
    assert m.ok("GET", "apis/svcapi")["path"] == "svcapi"


def test_no_token_no_entry(world):
    p, m, _ = world
    spec = m.ok("GET", "openapi.json")
    for path, item in spec["paths"].items():
        if path.endswith("openapi.json"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in item:
            if method == "parameters":
                continue
            st, _, _ = m.call(method.upper(), concrete, {} if method != "get" else None, token="")
            assert st == 401, (method, path, st)
