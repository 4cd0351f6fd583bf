"""validate-odata-request (plugins/odata): the real gateway with the odata
plugin loaded, an OData v4 API and a v2 one in front of an echo backend.

Each check gets a request that passes and requests that fail; a refused
request gets 400 with OData's error body and never reaches the backend
(every call carries a mark the backend records: check_call_mark).
"""

import http.client
import json

import pytest

from conftest import CALL_MARK, Portico, basic_config, check_call_mark, free_port, new_call_mark

pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


def odata_config(backend_url):
    cfg = basic_config(backend_url)
    v4 = cfg["apis"][0]
    v4["id"] = "v4"
    v4["path"] = "v4"
    v4["policies"] = {"inbound": [{"validate-odata-request": {
        "error-variable-name": "odataError",
        "min-odata-version": "4.0",
        "max-odata-version": "4.01",
        "max-size": 64,
    }}, "base"]}
    v2 = dict(v4)
    v2["id"] = "v2"
    v2["path"] = "v2"
    v2["policies"] = {"inbound": [{"validate-odata-request": {
        "default-odata-version": "2.0",
        "min-odata-version": "1.0",
        "max-odata-version": "3.0",
    }}]}
    cfg["apis"] = [v4, v2]
    return cfg


@pytest.fixture
def gw(portico, backend):
    return portico(odata_config(backend.url))


def call(p, method, path, headers=None, body=None):
    mark = new_call_mark()
    h = dict(headers or {})
    h[CALL_MARK] = mark
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        status, hdrs = r.status, dict((k.lower(), v) for k, v in r.getheaders())
    finally:
        c.close()
    check_call_mark(mark, status)
    return status, hdrs, data


def refused(p, method, path, code, headers=None, body=None, v2=False):
    status, hdrs, data = call(p, method, path, headers, body)
    assert status == 400, (path, status, data)
    assert hdrs.get("content-type", "").startswith("application/json")
    err = json.loads(data)["error"]
    assert err["code"] == code, (path, err)
    if v2:
        assert err["message"]["lang"] == "en-US" and err["message"]["value"]
    else:
        assert isinstance(err["message"], str) and err["message"]
    return err


def accepted(p, method, path, headers=None, body=None):
    status, _, data = call(p, method, path, headers, body)
    assert status == 200, (path, status, data)


def test_versions(gw):
    accepted(gw, "GET", "/v4/People")                                     # default 4.0
    accepted(gw, "GET", "/v4/People", {"OData-Version": "4.0"})
    accepted(gw, "GET", "/v4/People", {"OData-Version": "4.01", "OData-MaxVersion": "4.01"})
    err = refused(gw, "GET", "/v4/People", "UnsupportedODataVersion", {"OData-Version": "3.0"})
    assert "3.0" in err["message"] and "4.0" in err["message"]
    refused(gw, "GET", "/v4/People", "UnsupportedODataVersion", {"OData-Version": "5.0"})
    refused(gw, "GET", "/v4/People", "UnsupportedODataVersion", {"DataServiceVersion": "2.0"})
    refused(gw, "GET", "/v4/People", "InvalidODataVersion", {"OData-Version": "four"})
    refused(gw, "GET", "/v4/People", "InvalidODataVersion", {"OData-Version": "4"})
    refused(gw, "GET", "/v4/People", "UnsupportedODataVersion", {"OData-MaxVersion": "3.0"})
    refused(gw, "GET", "/v4/People", "InvalidODataVersion", {"OData-MaxVersion": "x.y"})
    # v1-v3: DataServiceVersion, with the v2 error shape
    accepted(gw, "GET", "/v2/Products")
    accepted(gw, "GET", "/v2/Products", {"DataServiceVersion": "2.0;NetFx", "MaxDataServiceVersion": "3.0"})
    refused(gw, "GET", "/v2/Products", "UnsupportedODataVersion", {"DataServiceVersion": "4.0"}, v2=True)
    refused(gw, "GET", "/v2/Products", "UnsupportedODataVersion", {"OData-Version": "4.0"}, v2=True)


def test_system_query_options(gw):
    accepted(gw, "GET", "/v4/People?$top=2&$skip=0&$filter=Age%20gt%203&$select=Name&$orderby=Name%20desc"
                        "&$expand=Trips&$count=true&$search=blue&$format=json&custom=1&@p=3")
    accepted(gw, "GET", "/v4/People?$format=application/json;odata.metadata=minimal")
    accepted(gw, "GET", "/v4/People?$format=application%2Fjson")
    accepted(gw, "GET", "/v4/People?$apply=aggregate(Age%20with%20sum%20as%20Total)&$compute=x&$skiptoken=abc")
    refused(gw, "GET", "/v4/People?$top=-1", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$top=ten", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$skip=1.5", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$top=", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$filter", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$count=maybe", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$format=bogus", "InvalidSystemQueryOptionValue")
    err = refused(gw, "GET", "/v4/People?$frobnicate=1", "UnknownSystemQueryOption")
    assert "$frobnicate" in err["message"]
    refused(gw, "GET", "/v4/People?%24frobnicate=1", "UnknownSystemQueryOption")
    refused(gw, "GET", "/v4/People?%24top=x", "InvalidSystemQueryOptionValue")
    refused(gw, "GET", "/v4/People?$inlinecount=allpages", "UnknownSystemQueryOption")
    refused(gw, "GET", "/v4/People?$Top=1", "UnknownSystemQueryOption")          # 4.0: case matters
    accepted(gw, "GET", "/v4/People?$Top=1", {"OData-Version": "4.01"})           # 4.01: it does not
    refused(gw, "GET", "/v4/People?$top=1&$top=2", "DuplicateSystemQueryOption")
    # the v2 set
    accepted(gw, "GET", "/v2/Products?$inlinecount=allpages&$top=5&$format=atom&$callback=f")
    refused(gw, "GET", "/v2/Products?$inlinecount=some", "InvalidSystemQueryOptionValue", v2=True)
    err = refused(gw, "GET", "/v2/Products?$count=true", "UnknownSystemQueryOption", v2=True)
    assert "OData 2.0" in err["message"]["value"]
    refused(gw, "GET", "/v2/Products?$search=x", "UnknownSystemQueryOption", v2=True)


def test_max_size(gw, backend):
    accepted(gw, "POST", "/v4/People", {"Content-Type": "application/json"}, b"x" * 64)
    assert backend.last().body == b"x" * 64  # read to be measured, and still sent
    err = refused(gw, "POST", "/v4/People", "RequestBodyTooLarge", {"Content-Type": "application/json"}, b"x" * 65)
    assert "65" in err["message"] and "64" in err["message"]

    def chunks(n):
        return b"%x\r\n%s\r\n0\r\n\r\n" % (n, b"y" * n)
    # chunked: the body is read and measured
    refused(gw, "POST", "/v4/People", "RequestBodyTooLarge", {"Transfer-Encoding": "chunked"}, chunks(100))
    accepted(gw, "POST", "/v4/People", {"Transfer-Encoding": "chunked"}, chunks(10))
    # no max-size: anything goes
    accepted(gw, "POST", "/v2/Products", {"Content-Type": "application/json"}, b"z" * 5000)


def test_configuration_errors(workdir, backend):
    def check(policy, where="inbound", scope="api"):
        cfg = basic_config(backend.url, port=free_port())
        stmt = {"validate-odata-request": policy}
        if scope == "api":
            cfg["apis"][0]["policies"] = {where: [stmt]}
        elif scope == "operation":
            cfg["apis"][0]["operations"][0]["policies"] = {where: [stmt]}
        else:
            cfg["policies"] = {where: [stmt]}
        return Portico(workdir, cfg).check()

    rc, out = check({})
    assert rc == 0, out
    rc, out = check({"min-odata-version": "4.0", "max-odata-version": "4.01", "max-size": 10})
    assert rc == 0, out
    rc, out = check({}, scope="global")
    assert rc == 0, out
    rc, out = check({"min-odata-version": "four"})
    assert rc == 1 and "is not an OData version" in out, out
    rc, out = check({"min-odata-version": "4.0", "max-odata-version": "3.0"})
    assert rc == 1 and "above max-odata-version" in out, out
    rc, out = check({"max-size": -1})
    assert rc == 1, out
    rc, out = check({}, where="outbound")
    assert rc == 1, out
    rc, out = check({}, scope="operation")
    assert rc == 1, out
    cfg = basic_config(backend.url, port=free_port())
    cfg["apis"][0]["policies"] = {"inbound": [{"validate-odata-request": {}}, {"validate-odata-request": {}}]}
    rc, out = Portico(workdir, cfg).check()
    assert rc == 1, out
