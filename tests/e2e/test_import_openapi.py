"""OpenAPI import end to end: an API built from a document in the
configuration file (`import: {format, file}`) routes its operations (path
parameters, required query parameters as template parameters, a path item
and a schema from other files), lists them through the management API with
the names APIM gives, and the shared sample documents all make a valid
configuration."""

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from conftest import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "t" * 32

PETSTORE = """openapi: 3.0.3
info: {title: Pets from a file}
servers: [{url: 'https://pets.example/v1'}]
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - {name: limit, in: query, schema: {type: integer}}
      responses: {'200': {description: ok}}
    post:
      summary: Add a pet
      requestBody: {content: {application/json: {schema: {$ref: 'schemas/pet.yaml#/Pet'}}}}
      responses: {'201': {description: made}}
  /pets/{petId}:
    get:
      operationId: Show Pet By Id
      parameters:
        - {name: petId, in: path, required: true, schema: {type: integer}}
      responses: {'200': {description: ok}}
  /search: {$ref: 'paths/search.yaml'}
"""

SEARCH = """get:
  operationId: search
  parameters:
    - {name: q, in: query, required: true, schema: {type: string}}
  responses: {'200': {description: ok}}
"""

PET = """Pet:
  type: object
  required: [name]
  properties:
    name: {type: string}
"""


def write(workdir, rel, text):
    path = os.path.join(workdir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def call(port, method, target, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, target), method=method, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_file_import_routes_the_documents_operations(backend, portico, workdir):
    write(workdir, "petstore.yaml", PETSTORE)
    write(workdir, "paths/search.yaml", SEARCH)
    write(workdir, "schemas/pet.yaml", PET)
    mgmt = "127.0.0.1:%d" % free_port()
    p = portico({"listen": ["127.0.0.1:%d" % free_port()], "workers": 1,
                 "management": {"listen": mgmt, "adminToken": TOKEN},
                 "apis": [{"id": "petstore", "path": "pets", "serviceUrl": backend.url,
                           "subscriptionRequired": False,
                           "import": {"format": "openapi", "file": "petstore.yaml"}}]})
    assert call(p.port, "GET", "/pets/pets/7") == 200
    assert backend.last().target == "/pets/7"
    assert call(p.port, "GET", "/pets/search?q=cat") == 200
    assert backend.last().target == "/search?q=cat"
    # q is required: a template parameter, so the operation needs it
    assert call(p.port, "GET", "/pets/search") == 404
    assert call(p.port, "POST", "/pets/pets", b'{"name": "Rex"}') == 200
    assert call(p.port, "DELETE", "/pets/pets/7") == 404

    req = urllib.request.Request("http://%s/management/apis/petstore/operations" % mgmt,
                                 headers={"Authorization": "Bearer " + TOKEN})
    ops = json.load(urllib.request.urlopen(req, timeout=5))["value"]
    got = sorted((o["id"], o["method"], o["urlTemplate"], o.get("displayName")) for o in ops)
    assert got == [("listpets", "GET", "/pets", "listPets"),
                   ("post-pets", "POST", "/pets", "Add a pet"),
                   ("search", "GET", "/search?q={q}", "search"),
                   ("show-pet-by-id", "GET", "/pets/{petId}", "Show Pet By Id")], got
    post = [o for o in ops if o["id"] == "post-pets"][0]
    rep = post["request"]["representations"][0]
    assert rep["contentType"] == "application/json"
    assert (rep["schemaId"], rep["typeName"]) == ("openapi", "Pet")


def samples_dir():
    base = os.environ.get("PORTICO_TESTDATA") or os.path.join(HERE, "..", "..", "..", "shared", "testdata")
    return os.path.join(base, "openapi")


def test_every_sample_document_makes_a_valid_configuration(portico, workdir):
    src = samples_dir()
    if not os.path.isdir(src):
        pytest.skip("no OpenAPI samples at %s (set PORTICO_TESTDATA)" % src)
    apis = []
    for i, name in enumerate(sorted(os.listdir(src))):
        if not name.endswith((".json", ".yaml")):
            continue
        shutil.copy(os.path.join(src, name), os.path.join(workdir, name))
        fmt = "openapi+json" if name.endswith(".json") else "openapi"
        apis.append({"id": "s%d" % i, "path": "s%d" % i, "serviceUrl": "http://127.0.0.1:9",
                     "import": {"format": fmt, "file": name}})
    assert len(apis) >= 6
    p = portico({"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "apis": apis}, start=False)
    rc, out = p.check()
    assert rc == 0, out
