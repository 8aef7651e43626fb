"""How operations become tools: kinds, names, arguments, request mapping, output schemas,
previews, what is reported instead of mapped, and references that loop. Every import here is
read back with the gateway's own loader, so each case also proves the folder loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.importer.support import imported, openapi

PET = {"type": "object", "required": ["name"],
       "properties": {"id": {"type": "integer", "format": "int64", "readOnly": True},
                      "name": {"type": "string"}, "tag": {"type": "string", "nullable": True}}}


def ok(description: str = "OK", schema: Any = None) -> dict[str, Any]:
    if schema is None:
        return {"200": {"description": description}}
    return {"200": {"description": description,
                    "content": {"application/json": {"schema": schema}}}}


def test_a_get_is_a_read_and_a_post_a_write_whose_json_body_is_flattened(tmp_path: Path) -> None:
    document = openapi({"/pets": {
        "get": {"operationId": "listPets", "summary": "List pets",
                "parameters": [{"name": "limit", "in": "query",
                                "schema": {"type": "integer", "maximum": 100}}],
                "responses": ok(schema={"type": "object",
                                        "properties": {"items": {"type": "array"}}})},
        "post": {"operationId": "createPet", "responses": ok(schema=PET),
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": PET}}}}}})
    result = imported(tmp_path, document)
    listing, creating = result.tools["list_pets"], result.tools["create_pet"]
    assert (listing["kind"], listing["title"]) == ("read", "List pets")
    assert listing["request"] == {"method": "GET", "path": "/pets",
                                  "query": {"limit": "{limit}"}}
    assert listing["response"]["output_schema"]["properties"] == {"items": {"type": "array"}}
    assert creating["kind"] == "write" and "response" not in creating  # a write answers a preview
    assert creating["input"] == {"name": {"type": "string", "required": True},
                                 "tag": {"type": ["string", "null"]}}  # id is readOnly
    assert creating["request"]["body"] == {"name": "{name}", "tag": "{tag}"}
    assert result.registry.services[0].tools["create_pet"].input_schema["required"] == ["name"]
    assert (result.report.found, len(result.report.generated)) == (2, 2)


@pytest.mark.parametrize(("body", "parameters"), [
    ({"type": "array", "items": PET}, []),
    (PET, [{"name": "name", "in": "query", "schema": {"type": "string"}}]),
    ({"type": "object", "properties": {"first-name": {"type": "string"}}}, []),
    ({"oneOf": [PET, {"type": "string"}]}, []),
], ids=["array", "clash", "not-an-identifier", "union"])
def test_a_body_that_is_not_a_plain_object_of_fresh_names_is_one_body_argument(
        tmp_path: Path, body: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    document = openapi({"/pets": {"put": {
        "operationId": "putPets", "parameters": parameters, "responses": ok(),
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}}})
    tool = imported(tmp_path, document).tools["put_pets"]
    assert tool["request"]["body"] == "{body}"
    arguments = tool.get("input") or tool["input_schema"]["properties"]
    assert "body" in arguments


def test_tool_names_are_snake_case_unique_at_most_64_and_from_the_path_without_an_id(
        tmp_path: Path) -> None:
    long = "get" + "VeryLongOperationName" * 5
    document = openapi({
        "/a": {"get": {"operationId": "getHTTPStatus", "responses": ok()},
               "post": {"operationId": "get_http_status", "responses": ok()}},
        "/b/{bId}/c": {"get": {"responses": ok(), "parameters": [
            {"name": "bId", "in": "path", "required": True, "schema": {"type": "string"}}]}},
        "/d": {"get": {"operationId": long, "responses": ok()}}})
    names = list(imported(tmp_path, document).tools)
    assert names[:3] == ["get_http_status", "get_http_status_2", "get_b_b_id_c"]
    assert len(names[3]) <= 64 and names[3].startswith("get_very_long_operation_name")


CANNOT: list[tuple[dict[str, Any], str]] = [
    ({"name": "session", "in": "cookie", "schema": {"type": "string"}}, "sends no cookies"),
    ({"name": "ids", "in": "query", "style": "pipeDelimited",
      "schema": {"type": "array", "items": {"type": "string"}}}, "style pipeDelimited"),
    ({"name": "filter", "in": "query", "schema": {"type": "object"}}, "only deepObject"),
    ({"name": "X-Tags", "in": "header", "schema": {"type": "array"}}, "an array header"),
    ({"name": "q", "in": "query", "content": {"application/json": {"schema": {}}}},
     "encoded as application/json"),
]


@pytest.mark.parametrize(("parameter", "reason"), CANNOT, ids=[c[1] for c in CANNOT])
def test_an_optional_parameter_the_gateway_cannot_send_is_left_out_and_reported(
        tmp_path: Path, parameter: dict[str, Any], reason: str) -> None:
    document = openapi({"/things": {"get": {"operationId": "listThings", "responses": ok(),
                                            "parameters": [parameter]}}})
    result = imported(tmp_path, document)
    [entry] = result.report.unmapped
    assert (entry.tool, entry.operation) == ("list_things", "GET /things")
    assert reason in entry.text and parameter["name"] in entry.text
    assert "input" not in result.tools["list_things"]


@pytest.mark.parametrize(("path", "operation", "reason"), [
    ("/things", {"parameters": [CANNOT[0][0] | {"required": True}]}, "required cookie"),
    ("/things", {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object"}}}}}, "multipart/form-data"),
    ("/files/{name}.{ext}", {"parameters": [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in ("name", "ext")]}, "mixes text and a parameter"),
    ("/things#second", {}, "holds '#'"),
    ("/things/{id}", {"parameters": [{"name": "id", "in": "path", "required": True,
                                      "style": "matrix", "schema": {"type": "string"}}]},
     "style matrix"),
], ids=["cookie", "form-body", "partial-segment", "fragment", "matrix"])
def test_an_operation_whose_required_input_cannot_be_sent_is_skipped_with_why(
        tmp_path: Path, path: str, operation: dict[str, Any], reason: str) -> None:
    document = openapi({path: {"post": {"operationId": "doIt", "responses": ok(), **operation},
                               "head": {"responses": ok()}}})
    report = imported(tmp_path, document).report
    skips = {entry.operation: entry.text for entry in report.skipped}
    assert reason in skips[f"POST {path}"]
    assert "HEAD is not a method the gateway sends" in skips[f"HEAD {path}"]
    assert report.found == 2 and report.generated == []


def test_query_lists_objects_and_headers_are_sent_in_the_documented_style(
        tmp_path: Path) -> None:
    document = openapi({"/search": {"get": {"operationId": "search", "responses": ok(),
                                            "parameters": [
        {"name": "tags", "in": "query", "explode": False,
         "schema": {"type": "array", "items": {"type": "string"}}},
        {"name": "filter", "in": "query", "style": "deepObject",
         "schema": {"type": "object", "properties": {"status": {"type": "string"}}}},
        {"name": "X-Request-ID", "in": "header", "schema": {"type": "string"}},
        {"name": "Accept", "in": "header", "schema": {"type": "string"}}]}}})
    result = imported(tmp_path, document)
    request = result.tools["search"]["request"]
    assert request["query"] == {"tags": "{tags}", "filter": "{filter}"}
    assert request["query_style"] == {"arrays": "comma"}
    assert request["headers"] == {"X-Request-ID": "{x_request_id}"}
    assert "sets this header itself" in result.report.unmapped[0].text


def test_a_circular_schema_is_a_permissive_object_where_it_meets_itself(
        tmp_path: Path) -> None:
    node = {"type": "object", "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        "parent": {"$ref": "#/components/schemas/Parent"}}}
    document = openapi(
        {"/nodes": {"post": {"operationId": "addNode", "responses": ok(schema=node),
                             "requestBody": {"content": {"application/json": {
                                 "schema": {"$ref": "#/components/schemas/Node"}}}}},
                    "get": {"operationId": "getNode", "responses": ok(schema=node)}}},
        components={"schemas": {"Node": node,
                                "Parent": {"$ref": "#/components/schemas/Node"},
                                "Loop": {"$ref": "#/components/schemas/Loop"}}})
    result = imported(tmp_path, document)
    children = result.tools["add_node"]["input"]["children"]
    assert children["items"]["type"] == "object"
    assert "refers to itself" in children["items"]["description"]
    parent = result.tools["get_node"]["response"]["output_schema"]["properties"]["parent"]
    assert parent["properties"]["children"]["items"]["type"] == "object"


def test_openapi_3_0_spellings_become_json_schema_2020_12(tmp_path: Path) -> None:
    count = {"type": "integer", "format": "int32", "minimum": 0, "exclusiveMinimum": True}
    schema = {"type": "object", "properties": {
        "count": count,
        "when": {"type": "string", "format": "date-time", "example": "2024-05-01T00:00:00Z"},
        "kind": {"type": "string", "enum": ["a", "b"], "nullable": True},
        "secret": {"type": "string", "writeOnly": True}}}
    document = openapi({"/x": {"get": {"operationId": "getX", "responses": ok(schema=schema),
                                       "parameters": [{"name": "n", "in": "query",
                                                       "schema": count}]}}})
    tool = imported(tmp_path, document).tools["get_x"]
    assert tool["input"]["n"] == {"type": "integer", "exclusiveMinimum": 0}
    output = tool["response"]["output_schema"]["properties"]
    assert output["when"] == {"type": "string", "format": "date-time",
                              "examples": ["2024-05-01T00:00:00Z"]}
    assert output["kind"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert "secret" not in output


@pytest.mark.parametrize(("answer", "published"), [
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}},
     {"type": "object", "properties": {"a": {}}}),
    ({"type": "array", "items": {"type": "object"}}, None),
    ({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}, "required": ["b"]}]},
     {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["b"]}),
], ids=["object-closed", "array", "all-of"])
def test_an_output_schema_is_published_only_for_an_object_answer(
        tmp_path: Path, answer: dict[str, Any], published: dict[str, Any] | None) -> None:
    document = openapi({"/x": {"get": {"operationId": "getX", "responses": {
        "204": {"description": "nothing"},
        "201": {"description": "made", "content": {"application/json": {"schema": answer}}}}}}})
    tool = imported(tmp_path, document).tools["get_x"]
    assert tool.get("response", {}).get("output_schema") == published


def test_a_write_on_a_path_that_can_be_read_previews_the_current_state(tmp_path: Path) -> None:
    item = {"parameters": [{"name": "petId", "in": "path", "required": True,
                            "schema": {"type": "integer"}}],
            "get": {"operationId": "getPet", "responses": ok()},
            "delete": {"operationId": "deletePet", "responses": ok()},
            "post": {"operationId": "touchPet", "responses": ok()}}
    tools = imported(tmp_path, openapi({"/pets/{petId}": item})).tools
    assert tools["delete_pet"]["write"] == {"preview": {"method": "GET",
                                                        "path": "/pets/{petId}"}}
    assert "write" not in tools["touch_pet"]  # a POST makes something new: nothing to show


def test_an_operation_without_security_is_anonymous_and_oauth_scopes_are_required(
        tmp_path: Path) -> None:
    flows = {"clientCredentials": {"tokenUrl": "https://login.example.test/token",
                                   "scopes": {"pets:read": "Read pets", "https://x/y": "URL"}}}
    document = openapi(
        {"/health": {"get": {"operationId": "health", "security": [], "responses": ok()}},
         "/pets": {"get": {"operationId": "listPets", "responses": ok()}}},
        security=[{"oauth": ["pets:read"]}],
        components={"securitySchemes": {"oauth": {"type": "oauth2", "flows": flows}}})
    result = imported(tmp_path, document)
    assert result.service["auth"] == {"resolver": "passthrough", "anonymous_tools": ["health"]}
    assert result.service["scopes"] == [{"name": "pets:read", "description": "Read pets"}]
    assert result.service["upstream"]["credential"] == {"header": "Authorization",
                                                        "format": "Bearer {token}"}
    assert result.tools["list_pets"]["scopes"] == ["pets:read"]
    assert "'https://x/y' has characters a scope name cannot have" in "\n".join(
        result.report.notes)


@pytest.mark.parametrize(("schemes", "credential", "note"), [
    ({"k": {"type": "http", "scheme": "bearer"}},
     {"header": "Authorization", "format": "Bearer {token}"}, None),
    ({"k": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
     {"header": "X-Api-Key", "format": "${DEMO_CREDENTIAL_PREFIX}{token}"}, None),
    ({"k": {"type": "apiKey", "in": "query", "name": "key"}}, None, "never puts a credential"),
    ({"k": {"type": "http", "scheme": "basic"}}, None, "basic authentication needs more"),
    ({"k": {"type": "apiKey", "in": "header", "name": "api_key"}}, None, "not a header name"),
], ids=["bearer", "api-key-header", "api-key-query", "basic", "underscore-header"])
def test_the_credential_header_comes_from_the_security_scheme_it_can_fill(
        tmp_path: Path, schemes: dict[str, Any], credential: dict[str, str] | None,
        note: str | None) -> None:
    document = openapi({"/x": {"get": {"operationId": "getX", "responses": ok()}}},
                       security=[{"k": []}], components={"securitySchemes": schemes})
    result = imported(tmp_path, document)
    assert result.service["upstream"].get("credential") == credential
    notes = "\n".join(result.report.notes)
    assert note is None or (note in notes and "default credential" in notes)


@pytest.mark.parametrize(("where", "base_url", "note"), [
    ({"servers": [{"url": "https://{region}.api.test:{port}/v2", "variables": {
        "region": {"default": "eu", "enum": ["eu", "us"]}, "port": {"default": "8443"}}}]},
     "https://eu.api.test:8443/v2", None),
    ({"servers": [{"url": "/api"}]}, "https://api.example.invalid/api", "no absolute server"),
    ({"servers": []}, "https://api.example.invalid", "no absolute server"),
], ids=["variables", "relative", "none"])
def test_the_base_url_is_the_first_server_behind_a_variable_named_for_the_service(
        tmp_path: Path, where: dict[str, Any], base_url: str, note: str | None) -> None:
    document = {**openapi({"/x": {"get": {"responses": ok()}}}), **where}
    result = imported(tmp_path, document, name="acme-help")
    assert result.service["upstream"]["base_url"] == f"${{ACME_HELP_API_URL:-{base_url}}}"
    assert note is None or note in "\n".join(result.report.notes)
    assert result.service["endpoint"] == "/acme-help/mcp"


def test_swagger_2_bodies_forms_and_collection_formats_are_lifted(tmp_path: Path) -> None:
    document = {
        "swagger": "2.0", "info": {"title": "Old", "version": "1"}, "host": "old.test",
        "basePath": "/v1", "schemes": ["http", "https"],
        "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        "parameters": {"ids": {"name": "ids", "in": "query", "type": "array",
                               "collectionFormat": "multi", "items": {"type": "integer"}}},
        "definitions": {"Pet": PET},
        "paths": {"/pets": {
            "get": {"operationId": "find", "parameters": [{"$ref": "#/parameters/ids"}],
                    "responses": {"200": {"description": "ok",
                                          "schema": {"$ref": "#/definitions/Pet"}}}},
            "post": {"operationId": "add", "responses": {"200": {"description": "ok"}},
                     "parameters": [{"name": "pet", "in": "body", "required": True,
                                     "schema": {"$ref": "#/definitions/Pet"}}]},
            "put": {"operationId": "upload", "consumes": ["multipart/form-data"],
                    "responses": {"200": {"description": "ok"}}, "parameters": [
                        {"name": "file", "in": "formData", "type": "file", "required": True}]}}}}
    result = imported(tmp_path, document)
    assert result.service["upstream"]["base_url"] == "${DEMO_API_URL:-https://old.test/v1}"
    assert result.service["upstream"]["credential"]["header"] == "X-Key"
    assert result.tools["find"]["input"]["ids"]["type"] == "array"
    assert "query_style" not in result.tools["find"]["request"]  # multi: repeated, the default
    assert result.tools["find"]["response"]["output_schema"]["required"] == ["name"]
    assert result.tools["add"]["request"]["body"] == {"name": "{name}", "tag": "{tag}"}
    assert "multipart/form-data" in result.report.skipped[0].text
    assert result.report.version == "2.0"


def test_include_tags_and_exclude_skip_operations_and_say_so(tmp_path: Path) -> None:
    document = openapi({
        "/a": {"get": {"operationId": "getA", "tags": ["alpha"], "responses": ok()},
               "delete": {"operationId": "deleteA", "tags": ["alpha"], "responses": ok()}},
        "/b": {"get": {"operationId": "getB", "tags": ["beta"], "responses": ok()}}})
    result = imported(tmp_path, document, include_tags=("Alpha",), exclude=("DELETE /*",))
    assert list(result.tools) == ["get_a"]
    assert {e.operation: e.text for e in result.report.skipped} == {
        "DELETE /a": "--exclude DELETE /*", "GET /b": "its tags are not among --include-tags"}
    assert set(result.files) == {"alpha.yaml", "service.yaml"}


def test_descriptions_are_trimmed_to_the_budget_and_say_when_deprecated(tmp_path: Path) -> None:
    document = openapi({"/x": {"get": {"operationId": "getX", "summary": "Get x",
                                       "deprecated": True, "description": "word " * 400,
                                       "responses": ok()}}})
    tool = imported(tmp_path, document).tools["get_x"]
    assert tool["description"].startswith("Deprecated. Get x\n\nword word")
    assert len(tool["description"]) <= 1000 and tool["description"].endswith("…")


def test_an_unresolved_reference_is_any_value_and_reported(tmp_path: Path) -> None:
    document = openapi({"/x": {"post": {"operationId": "postX", "responses": ok(),
                                        "requestBody": {"content": {"application/json": {
                                            "schema": {"$ref": "other.yaml#/Pet"}}}}}}})
    result = imported(tmp_path, document)
    assert "is unresolved" in result.tools["post_x"]["input"]["body"]["description"]
    assert "$ref other.yaml#/Pet is not resolved" in "\n".join(result.report.notes)
