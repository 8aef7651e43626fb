"""PII by scope: without the service's PII scope, identities become stable account-scoped
pseudonyms, dropped fields disappear and emails in text are replaced; with it, data is as is.

Through the endpoint with a small spec tree of its own (tmp_path), the authorization server and the
upstream faked at the network edge; then the pure functions of gateway.calls.redaction directly.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from gateway.calls.redaction import PSEUDONYM_DOMAIN, Pseudonymiser, redact
from gateway.keys import derive_key
from gateway.spec.compiled import RedactionRules
from gateway.upstream.mock_wire import MockWire
from tests.support import AiohttpClient, auth, gateway_app, introspection_of, rpc, service_tree

# Each test runs with the compiled row loops and with their pure-Python twins.
pytestmark = pytest.mark.usefixtures("row_loops")

URL = "/crm/mcp"
API = "https://api.crm.test"
INTROSPECT = "https://auth.crm.test/introspect"
KEY = b"redaction-test-key-0123456789abcdef"
EMAIL_PSEUDONYM = re.compile(r"^person-[0-9a-f]{12}@pseudonym\.invalid$")
NAME_PSEUDONYM = re.compile(r"^anon-[0-9a-f]{12}$")

ANALYST = "crm_analyst_1"
COLLEAGUE = "crm_colleague_1"
OTHER_ACCOUNT = "crm_analyst_2"
PRIVILEGED = "crm_privileged_1"
TOKENS: dict[str, dict[str, Any]] = {
    ANALYST: {"scope": "customers:read customers:write", "sub": "u_analyst",
              "account_id": "acc_1"},
    COLLEAGUE: {"scope": "customers:read", "sub": "u_colleague", "account_id": "acc_1"},
    OTHER_ACCOUNT: {"scope": "customers:read", "sub": "u_analyst", "account_id": "acc_2"},
    PRIVILEGED: {"scope": "customers:read customers:write pii:read pii:write",
                 "sub": "u_admin", "account_id": "acc_1"},
}

SERVICE = """
version: 1
name: crm
title: CRM
endpoint: /crm/mcp
upstream: {base_url: "https://api.crm.test"}
auth:
  resolver: introspection
  introspection_url: https://auth.crm.test/introspect
scopes:
  - {name: "customers:read"}
  - {name: "customers:write"}
  - {name: "pii:read"}
  - {name: "pii:write"}
pii:
  scope: "pii:read"
  write_scope: "pii:write"
  fields: [email, firstName, lastName, recipients]
  drop: [jobTitle, city]
  scrub_text: true
"""
TOOLS = """
version: 1
tools:
  - name: get_customer
    kind: read
    description: One customer.
    scopes: ["customers:read"]
    input:
      id: {type: string, required: true}
    request: {method: GET, path: '/customers/{id}'}
    response: {select: data}
  - name: list_customers
    kind: read
    description: Customers, optionally found by email.
    scopes: ["customers:read"]
    input:
      email: {type: string, pii: read, description: Needs pii:read}
      status: {type: string}
    request: {method: GET, path: /customers, query: {email: '{email}', status: '{status}'}}
    response: {select: data.items}
  - name: export_contacts
    kind: read
    description: Every contact's email; nothing but personal data.
    scopes: ["customers:read"]
    pii: {required: true}
    request: {method: GET, path: /contacts}
  - name: customer_notes
    kind: read
    description: Notes on a customer.
    scopes: ["customers:read"]
    input:
      id: {type: string, required: true}
    pii: {fields: [author], drop: [ip]}
    request: {method: GET, path: '/customers/{id}/notes'}
  - name: change_email
    kind: write
    description: Change a customer's email.
    scopes: ["customers:write"]
    input:
      id: {type: string, required: true}
      email: {type: string, pii: write}
    request: {method: PATCH, path: '/customers/{id}', body: {email: '{email}'}}
"""

CUSTOMER: dict[str, Any] = {
    "id": "c1",
    "email": "Ann.Lee@Example.com",
    "firstName": "Ann",
    "lastName": "Lee",
    "jobTitle": "Chief Financial Officer",
    "city": "Oslo",
    "score": 9,
    "active": True,
    "tags": ["vip", "b2b"],
    "note": "Escalated by ann.lee@example.com and Bob@Corp.example twice.",
    "recipients": ["ann.lee@example.com", " BOB@corp.example "],
    "company": {"name": "Acme", "city": "Bergen", "email": "billing@acme.example"},
}
SAME_PERSON = {"id": "c1", "email": "  ANN.LEE@EXAMPLE.COM ", "firstName": "ann",
               "lastName": "LEE", "city": "Oslo"}
NOTES = {"items": [{"text": "Call back", "author": "Mia Wong", "ip": "10.0.0.7"}]}


introspection = introspection_of(TOKENS, 4_102_444_800)


@pytest.fixture
def upstream(router: respx.MockRouter) -> respx.MockRouter:
    router.post(INTROSPECT).mock(side_effect=introspection)
    router.get(f"{API}/customers/c1").mock(
        return_value=httpx.Response(200, json={"data": CUSTOMER}))
    router.get(f"{API}/customers/c404").mock(return_value=httpx.Response(
        404, json={"message": "No customer with email ann.lee@example.com here"}))
    router.get(f"{API}/customers").mock(
        return_value=httpx.Response(200, json={"data": {"items": [SAME_PERSON]}}))
    router.get(f"{API}/contacts").mock(
        return_value=httpx.Response(200, json={"emails": ["ann.lee@example.com"]}))
    router.get(f"{API}/customers/c1/notes").mock(
        return_value=httpx.Response(200, json=NOTES))
    router.patch(f"{API}/customers/c1").mock(return_value=httpx.Response(200, json={}))
    return router


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, tmp_path: Path, upstream: respx.MockRouter,
                  wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "crm", SERVICE, TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs,
                                            secret_key=SecretStr(KEY.decode())))


async def send(client: TestClient[Any, Any], token: str, name: str,
               arguments: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    response = await client.post(URL, headers=auth(token), json=rpc(
        "tools/call", {"name": name, "arguments": arguments or {}}))
    body: dict[str, Any] = await response.json()
    return response.status, body


async def structured(client: TestClient[Any, Any], token: str, name: str,
                     arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    status, body = await send(client, token, name, arguments)
    assert status == 200, body
    assert body["result"]["isError"] is False, body
    content: dict[str, Any] = body["result"]["structuredContent"]
    assert orjson.loads(body["result"]["content"][0]["text"]) == content
    return content


def upstream_paths(router: respx.MockRouter) -> list[str]:
    return [c.request.url.path for c in router.calls if c.request.url.host == "api.crm.test"]


# --- without the PII scope ----------------------------------------------------------------


async def test_without_the_pii_scope_identities_become_pseudonyms_and_nothing_else_changes(
        gateway: TestClient[Any, Any]) -> None:
    seen = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    assert set(seen) == set(CUSTOMER) - {"jobTitle", "city"}
    assert EMAIL_PSEUDONYM.match(seen["email"])
    assert NAME_PSEUDONYM.match(seen["firstName"]) and NAME_PSEUDONYM.match(seen["lastName"])
    assert seen["firstName"] != seen["lastName"]
    assert (seen["id"], seen["score"], seen["active"], seen["tags"]) == (
        "c1", 9, True, ["vip", "b2b"])
    assert len(seen["recipients"]) == 2
    assert all(EMAIL_PSEUDONYM.match(r) for r in seen["recipients"])
    assert seen["company"]["name"] == "Acme"
    assert set(seen["company"]) == {"name", "email"}


async def test_the_pseudonym_is_keyed_and_scoped_to_the_callers_account(
        gateway: TestClient[Any, Any]) -> None:
    seen = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    assert seen["email"] == Pseudonymiser(derive_key(KEY, "pseudonyms"), "acc_1")(
        "Ann.Lee@Example.com")
    assert seen["email"] != Pseudonymiser(b"another key", "acc_1")("Ann.Lee@Example.com")


async def test_the_same_person_gets_the_same_pseudonym_across_calls_tools_and_spellings(
        gateway: TestClient[Any, Any]) -> None:
    first = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    again = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    listed = (await structured(gateway, ANALYST, "list_customers"))["items"][0]
    assert first == again
    assert listed["email"] == first["email"]          # "  ANN.LEE@EXAMPLE.COM "
    assert listed["firstName"] == first["firstName"]  # "ann" vs "Ann"
    assert listed["lastName"] == first["lastName"]    # "LEE" vs "Lee"
    assert first["recipients"][0] == first["email"]


async def test_another_user_of_the_account_sees_the_same_pseudonyms(
        gateway: TestClient[Any, Any]) -> None:
    mine = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    theirs = await structured(gateway, COLLEAGUE, "get_customer", {"id": "c1"})
    assert theirs == mine


async def test_another_account_gets_other_pseudonyms(gateway: TestClient[Any, Any]) -> None:
    mine = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    theirs = await structured(gateway, OTHER_ACCOUNT, "get_customer", {"id": "c1"})
    assert EMAIL_PSEUDONYM.match(theirs["email"])
    assert theirs["email"] != mine["email"]
    assert theirs["firstName"] != mine["firstName"]
    assert theirs["score"] == mine["score"]


async def test_emails_inside_free_text_are_replaced_by_the_same_pseudonyms(
        gateway: TestClient[Any, Any]) -> None:
    seen = await structured(gateway, ANALYST, "get_customer", {"id": "c1"})
    bob = seen["recipients"][1]
    assert seen["note"] == f"Escalated by {seen['email']} and {bob} twice."


async def test_no_original_identity_is_left_anywhere_in_the_answer(
        gateway: TestClient[Any, Any]) -> None:
    _, body = await send(gateway, ANALYST, "get_customer", {"id": "c1"})
    text = orjson.dumps(body).decode().lower()
    for original in ("ann.lee@example.com", "bob@corp.example", "billing@acme.example",
                     "chief financial officer", "oslo", "bergen", '"lee"'):
        assert original not in text
    assert PSEUDONYM_DOMAIN in text


async def test_tool_pii_adds_its_own_fields_and_drops(gateway: TestClient[Any, Any]) -> None:
    notes = await structured(gateway, ANALYST, "customer_notes", {"id": "c1"})
    [note] = notes["items"]
    assert set(note) == {"text", "author"}
    assert NAME_PSEUDONYM.match(note["author"])
    assert note["text"] == "Call back"


async def test_upstream_error_messages_are_scrubbed_for_callers_without_the_scope(
        gateway: TestClient[Any, Any]) -> None:
    _, hidden = await send(gateway, ANALYST, "get_customer", {"id": "c404"})
    _, shown = await send(gateway, PRIVILEGED, "get_customer", {"id": "c404"})
    hidden_text = hidden["result"]["content"][0]["text"]
    assert hidden["result"]["isError"] is True
    assert "HTTP 404" in hidden_text
    assert "ann.lee@example.com" not in hidden_text.lower()
    assert f"@{PSEUDONYM_DOMAIN}" in hidden_text
    assert "ann.lee@example.com" in shown["result"]["content"][0]["text"]


# --- with the PII scope -----------------------------------------------------------------------


async def test_with_the_pii_scope_the_data_is_returned_as_is(
        gateway: TestClient[Any, Any]) -> None:
    assert await structured(gateway, PRIVILEGED, "get_customer", {"id": "c1"}) == CUSTOMER
    assert await structured(gateway, PRIVILEGED, "customer_notes", {"id": "c1"}) == NOTES


# --- PII gates ------------------------------------------------------------------------------


async def test_searching_by_a_pii_argument_without_the_scope_is_403_naming_it(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    response = await gateway.post(URL, headers=auth(ANALYST), json=rpc(
        "tools/call", {"name": "list_customers", "arguments": {"email": "ann.lee@example.com"}}))
    body = await response.json()
    challenge = response.headers["WWW-Authenticate"]
    assert response.status == 403
    assert 'error="insufficient_scope"' in challenge and 'scope="pii:read"' in challenge
    assert body["error"]["data"]["required_scopes"] == ["pii:read"]
    assert upstream_paths(upstream) == []


async def test_the_same_tool_works_without_the_pii_argument(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    found = await structured(gateway, ANALYST, "list_customers", {"status": "active"})
    assert len(found["items"]) == 1
    assert upstream_paths(upstream) == ["/customers"]


async def test_searching_by_a_pii_argument_with_the_scope_sends_it_upstream(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    await structured(gateway, PRIVILEGED, "list_customers", {"email": "ann.lee@example.com"})
    sent = [c.request for c in upstream.calls if c.request.url.path == "/customers"]
    assert sent[-1].url.params["email"] == "ann.lee@example.com"


async def test_a_pii_write_argument_needs_the_pii_write_scope(
        gateway: TestClient[Any, Any]) -> None:
    status, body = await send(gateway, ANALYST, "change_email",
                              {"id": "c1", "email": "new@example.com"})
    allowed, _ = await send(gateway, PRIVILEGED, "change_email",
                            {"id": "c1", "email": "new@example.com"})
    assert status == 403
    assert body["error"]["data"]["required_scopes"] == ["pii:write"]
    assert allowed == 200


async def test_a_tool_that_is_all_personal_data_needs_the_pii_scope(
        gateway: TestClient[Any, Any], upstream: respx.MockRouter) -> None:
    status, body = await send(gateway, ANALYST, "export_contacts")
    assert status == 403
    assert body["error"]["data"]["required_scopes"] == ["pii:read"]
    assert upstream_paths(upstream) == []
    exported = await structured(gateway, PRIVILEGED, "export_contacts")
    assert exported == {"emails": ["ann.lee@example.com"]}


# --- the pure functions -------------------------------------------------------------------------

RULES = RedactionRules(pseudonymise=frozenset({"email", "name"}),
                       drop=frozenset({"secret"}), scrub_text=True)
PSEUDONYM = Pseudonymiser(KEY, "acc_1")


@pytest.mark.parametrize(("first", "second"), [
    ("ann@example.com", "ANN@EXAMPLE.COM"),
    ("ann@example.com", "  ann@example.com\t"),
    ("Ann Lee", "ann lee"),
    ("Ann Lee", " ANN LEE "),
])
def test_pseudonyms_ignore_case_and_surrounding_whitespace(first: str, second: str) -> None:
    assert PSEUDONYM(first) == PSEUDONYM(second)


@pytest.mark.parametrize(("value", "form"), [
    ("ann@example.com", EMAIL_PSEUDONYM),
    (" ann@example.com ", EMAIL_PSEUDONYM),
    ("Ann Lee", NAME_PSEUDONYM),
    ("@handle", NAME_PSEUDONYM),
    ("not an email @ all", NAME_PSEUDONYM),
])
def test_an_email_keeps_the_shape_of_an_email_and_anything_else_becomes_anon(
        value: str, form: re.Pattern[str]) -> None:
    assert form.match(PSEUDONYM(value))


def test_pseudonyms_differ_by_value_account_and_key() -> None:
    value = "ann@example.com"
    assert PSEUDONYM(value) != PSEUDONYM("bob@example.com")
    assert PSEUDONYM(value) != Pseudonymiser(KEY, "acc_2")(value)
    assert PSEUDONYM(value) != Pseudonymiser(KEY, None)(value)
    assert PSEUDONYM(value) != Pseudonymiser(b"other", "acc_1")(value)
    assert PSEUDONYM(value) == Pseudonymiser(KEY, "acc_1")(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("no address here", "no address here"),
    ("mail ann@example.com now", f"mail {PSEUDONYM('ann@example.com')} now"),
    ("a@x.io, b@y.co.uk.", f"{PSEUDONYM('a@x.io')}, {PSEUDONYM('b@y.co.uk')}."),
    ("<ANN@EXAMPLE.COM>", f"<{PSEUDONYM('ann@example.com')}>"),
    ("price @ 5 per seat", "price @ 5 per seat"),
])
def test_scrub_replaces_every_email_in_text_and_nothing_else(text: str, expected: str) -> None:
    assert PSEUDONYM.scrub(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ({"email": "a@x.io", "n": 1}, {"email": PSEUDONYM("a@x.io"), "n": 1}),
    ({"name": "Ann", "secret": "s"}, {"name": PSEUDONYM("Ann")}),
    ({"name": ["Ann", "Bob"]}, {"name": [PSEUDONYM("Ann"), PSEUDONYM("Bob")]}),
    ({"name": {"first": "Ann"}}, {"name": {"first": PSEUDONYM("Ann")}}),
    ({"name": "", "email": None}, {"name": "", "email": None}),
    ({"name": 42}, {"name": 42}),
    ([{"deep": [{"secret": 1, "email": "a@x.io"}]}],
     [{"deep": [{"email": PSEUDONYM("a@x.io")}]}]),
    ({"text": "by a@x.io"}, {"text": f"by {PSEUDONYM('a@x.io')}"}),
    ("by a@x.io", f"by {PSEUDONYM('a@x.io')}"),
    ({"flag": True, "score": 9.5, "none": None}, {"flag": True, "score": 9.5, "none": None}),
    ({"tags": ["x", "by a@x.io", 3, None, ["b@y.io", {"secret": 2}]], "n": [], "o": {}},
     {"tags": ["x", f"by {PSEUDONYM('a@x.io')}", 3, None, [PSEUDONYM("b@y.io"), {}]],
      "n": [], "o": {}}),
    (OrderedDict(email="a@x.io", t=("c@z.io",)), {"email": PSEUDONYM("a@x.io"),
                                                  "t": [PSEUDONYM("c@z.io")]}),
    ({1: "by a@x.io", "name": {2: "Ann"}}, {1: f"by {PSEUDONYM('a@x.io')}",
                                            "name": {2: PSEUDONYM("Ann")}}),
    (5, 5),
], ids=["field", "drop", "list", "nested object", "empty", "number", "depth", "text",
        "top-level text", "scalars", "mixed lists", "other mapping and sequence types",
        "keys that are not text", "top-level number"])
def test_redact(value: Any, expected: Any) -> None:
    original = copy.deepcopy(value)
    assert redact(value, RULES, PSEUDONYM) == expected
    assert value == original  # a copy: the input is untouched


def test_redact_without_scrub_text_leaves_emails_in_text() -> None:
    rules = RedactionRules(pseudonymise=frozenset({"email"}), drop=frozenset(), scrub_text=False)
    value = {"email": "a@x.io", "text": "by a@x.io"}
    assert redact(value, rules, PSEUDONYM) == {"email": PSEUDONYM("a@x.io"), "text": "by a@x.io"}


def test_rules_with_nothing_to_do_are_empty() -> None:
    assert RedactionRules(frozenset(), frozenset(), scrub_text=False).empty
    assert not RedactionRules(frozenset(), frozenset(), scrub_text=True).empty
    assert not RULES.empty


# --- forms of an address the scrubber must recognise --------------------------------------------


@pytest.mark.parametrize("address", [
    "jürgen.müller@example.de",
    "JÜRGEN.MÜLLER@EXAMPLE.DE",
    "josé@bücher.example",
    "用户@例子.广告",
    "佐々木@例え.jp",
    "अजय@डाटामेल.भारत",
    "δοκιμή@παράδειγμα.δοκιμή",
    "jane_doe@example.com",
    "ann@example.xn--p1ai",
    "ANN@EXAMPLE.XN--P1AI",
], ids=["umlauts", "umlauts upper case", "unicode domain", "cjk", "iteration mark",
        "devanagari with vowel signs", "greek", "underscore", "punycode tld",
        "punycode tld upper case"])
def test_scrub_replaces_an_internationalised_address_whole(address: str) -> None:
    pseudonym = PSEUDONYM(address)
    assert EMAIL_PSEUDONYM.match(pseudonym)
    for around in ("{}", "from {} today", "<{}>", "«{}»", "“{}”", "mail:{}, again"):
        assert PSEUDONYM.scrub(around.format(address)) == around.format(pseudonym)


def test_addresses_that_differ_only_in_their_non_ascii_letters_get_different_pseudonyms() -> None:
    scrubbed = [PSEUDONYM.scrub(a) for a in ("jürgen@example.de", "jûrgen@example.de",
                                             "jurgen@example.de")]
    assert all(EMAIL_PSEUDONYM.match(s) for s in scrubbed)
    assert len(set(scrubbed)) == 3


@pytest.mark.parametrize(("text", "expected", "address", "at"), [
    ("https://crm.example/find?email=jane.doe%40example.com&page=2",
     "https://crm.example/find?email={}&page=2", "jane.doe@example.com", "%40"),
    ("/login?next=%2Fsearch%3Femail%3Djane.doe%2540example.com",
     "/login?next=%2Fsearch%3Femail%3D{}", "jane.doe@example.com", "%2540"),
    ("mailto%3AJANE.DOE%40EXAMPLE.COM.", "mailto%3A{}.", "jane.doe@example.com", "%40"),
    ("?q=j%C3%BCrgen%40m%C3%BCller.example", "?q={}", "jürgen@müller.example", "%40"),
    ("/users/j%C3%BCrgen@example.de/profile", "/users/{}/profile", "jürgen@example.de", "@"),
    ("jane%2Bnews%40example.com", "{}", "jane+news@example.com", "%40"),
], ids=["query", "double-encoded", "upper case", "encoded unicode", "encoded local part",
        "encoded plus tag"])
def test_a_percent_encoded_address_is_replaced_in_the_same_encoding(
        text: str, expected: str, address: str, at: str) -> None:
    replaced = expected.format(PSEUDONYM(address).replace("@", at))
    assert PSEUDONYM.scrub(text) == replaced
    assert redact({"link": text, "links": [text]}, RULES, PSEUDONYM) == {
        "link": replaced, "links": [replaced]}


@pytest.mark.parametrize("text", ["50% off", "100%40 of them", "%40home", "a%40b", "a%2540b.",
                                  "%C3%BC and %zz", "?email%3D%40example.com"])
def test_percent_signs_without_an_address_are_left_alone(text: str) -> None:
    assert PSEUDONYM.scrub(text) == text


def test_an_address_whose_escapes_are_not_utf8_is_replaced_as_spelt() -> None:
    spelt = "j%C3rgen%40example.de"
    assert EMAIL_PSEUDONYM.match(PSEUDONYM(spelt))
    assert PSEUDONYM(spelt) != PSEUDONYM("jrgen@example.de")
    assert PSEUDONYM.scrub(f"?q={spelt}") == f"?q={PSEUDONYM(spelt).replace('@', '%40')}"


@pytest.mark.parametrize("encoded", ["jane.doe%40example.com", " JANE.DOE%2540EXAMPLE.COM "])
def test_a_percent_encoded_address_has_the_pseudonym_of_the_address(encoded: str) -> None:
    assert PSEUDONYM(encoded) == PSEUDONYM("jane.doe@example.com")
    assert redact({"email": encoded}, RULES, PSEUDONYM) == {
        "email": PSEUDONYM("jane.doe@example.com")}


# --- keys in any case -------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "key"), [
    ("email", "EMAIL"), ("email", "Email"), ("firstName", "FirstName"), ("firstName", "firstname"),
    ("Email", "email"), ("straße", "STRASSE"),
])
def test_a_policy_field_is_pseudonymised_whatever_the_case_of_its_key(policy: str,
                                                                       key: str) -> None:
    rules = RedactionRules(pseudonymise=frozenset({policy}), drop=frozenset(), scrub_text=False)
    value = {key: "JANE@EXAMPLE.COM", "rows": [{key: ["Jane"], "n": 1}]}
    assert redact(value, rules, PSEUDONYM) == {
        key: PSEUDONYM("jane@example.com"), "rows": [{key: [PSEUDONYM("Jane")], "n": 1}]}


@pytest.mark.parametrize(("policy", "key"), [
    ("jobTitle", "JobTitle"), ("jobTitle", "JOBTITLE"), ("City", "city"),
])
def test_a_dropped_field_is_dropped_whatever_the_case_of_its_key(policy: str, key: str) -> None:
    rules = RedactionRules(pseudonymise=frozenset({"email"}), drop=frozenset({policy}),
                           scrub_text=False)
    value = {key: "Chief Financial Officer", "rows": [{key: "Oslo", "n": 1}], "n": 2}
    assert redact(value, rules, PSEUDONYM) == {"rows": [{"n": 1}], "n": 2}


def test_a_key_both_dropped_and_pseudonymised_in_different_cases_is_dropped() -> None:
    rules = RedactionRules(pseudonymise=frozenset({"Email"}), drop=frozenset({"email"}),
                           scrub_text=False)
    assert redact({"EMAIL": "a@x.io", "n": 1}, rules, PSEUDONYM) == {"n": 1}


# --- addresses used as keys -------------------------------------------------------------------

JANE = PSEUDONYM("jane@example.com")


@pytest.mark.parametrize(("value", "expected"), [
    ({"jane@example.com": 3, "n": 1}, {JANE: 3, "n": 1}),
    ({"a": 1, "JANE@EXAMPLE.COM": 2, "b": 3}, {"a": 1, JANE: 2, "b": 3}),
    ({"opened by jane@example.com": 1}, {f"opened by {JANE}": 1}),
    ({"jane%40example.com": 1}, {JANE.replace("@", "%40"): 1}),
    ([{"stats": {"jane@example.com": {"opened": 2}}}], [{"stats": {JANE: {"opened": 2}}}]),
    ({"jane@example.com": {"note": "cc bob@example.com", "secret": 1}},
     {JANE: {"note": f"cc {PSEUDONYM('bob@example.com')}"}}),
    ({"name": {"jane@example.com": "Jane"}}, {"name": {JANE: PSEUDONYM("Jane")}}),
], ids=["count", "order kept", "text", "percent-encoded", "nested", "value redacted too",
        "under a pseudonymised field"])
def test_an_address_used_as_a_key_becomes_its_pseudonym(value: Any, expected: Any) -> None:
    original = copy.deepcopy(value)
    redacted = redact(value, RULES, PSEUDONYM)
    assert redacted == expected
    assert orjson.dumps(redacted) == orjson.dumps(expected)  # the order of keys too
    assert value == original


@pytest.mark.parametrize(("first", "second", "merged"), [
    (3, 2, 5),
    (1.5, 2, 3.5),
    (["a"], ["b", "c"], ["a", "b", "c"]),
    ({"opened": 2, "tags": ["x"]}, {"opened": 1, "clicked": 4, "tags": ["y"]},
     {"opened": 3, "tags": ["x", "y"], "clicked": 4}),
    ("first", "second", "first"),
    (3, "three", 3),
    (True, True, True),
    (None, 1, None),
], ids=["counts add", "numbers add", "lists join", "objects merge", "text: the first stays",
        "mixed: the first stays", "flags do not add", "null: the first stays"])
def test_keys_that_become_the_same_pseudonym_are_merged(first: Any, second: Any,
                                                        merged: Any) -> None:
    value = {"n": 0, "jane@example.com": first, "JANE@Example.COM": second, "z": 1}
    redacted = redact(value, RULES, PSEUDONYM)
    assert redacted == {"n": 0, JANE: merged, "z": 1}
    assert list(redacted) == ["n", JANE, "z"]


def test_without_scrub_text_an_address_as_a_key_stays_as_it_is() -> None:
    rules = RedactionRules(pseudonymise=frozenset({"email"}), drop=frozenset(), scrub_text=False)
    assert redact({"jane@example.com": 3}, rules, PSEUDONYM) == {"jane@example.com": 3}


# --- stable pseudonyms ------------------------------------------------------------------------


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.mark.parametrize(("first", "second"), [
    ("Jürgen.Müller@Example.de", "jürgen.müller@example.de"),
    ("JÜRGEN.MÜLLER@EXAMPLE.DE", "jürgen.müller@example.de"),
    (nfd("jürgen.müller@example.de"), "jürgen.müller@example.de"),
    (nfd("JÜRGEN.MÜLLER@EXAMPLE.DE"), "jürgen.müller@example.de"),
    ("STRASSE@example.de", "straße@example.de"),
], ids=["mixed case", "upper case", "decomposed", "decomposed upper case", "sharp s"])
def test_every_case_and_unicode_form_of_an_address_gets_one_pseudonym(first: str,
                                                                      second: str) -> None:
    assert PSEUDONYM(first) == PSEUDONYM(second)
    assert PSEUDONYM.scrub(f"by {first}.") == PSEUDONYM.scrub(f"by {second}.")


@pytest.mark.parametrize(("first", "second"), [
    (nfd("Zoë Ünal"), "zoë ünal"),
    ("Straße", "STRASSE"),
], ids=["decomposed", "sharp s"])
def test_every_case_and_unicode_form_of_a_name_gets_one_pseudonym(first: str,
                                                                  second: str) -> None:
    assert PSEUDONYM(first) == PSEUDONYM(second)


def test_pseudonyms_of_ascii_values_are_the_ones_given_before_unicode_folding() -> None:
    assert PSEUDONYM("Ann.Lee@Example.com") == "person-3832177ed97a@pseudonym.invalid"
    assert PSEUDONYM("Ann Lee") == "anon-c46d2c3e0f7b"
