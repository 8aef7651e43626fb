"""Multi-round-trip requests (MRTR, 2026-07-28): what a call may ask of its client, and how the
retry that answers comes back. Pure.

A tools/call or prompts/get that needs input answers `input_required` with `inputRequests`
(elicitation, sampling, roots) and a sealed `requestState`; the client retries the same call
with a new id, `params.inputResponses` and that state. Only what the client declared in its
request's `_meta` client capabilities is ever asked; legacy-era clients declare nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from mcp_types import CLIENT_CAPABILITIES_META_KEY
from mcp_types.jsonrpc import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY

from gateway.errors import ProtocolError
from gateway.protocol.envelope import Inbound

CAPABILITY_OF: Final = {"elicitation/create": "elicitation",
                        "sampling/createMessage": "sampling", "roots/list": "roots"}
"""The client capability each kind of input request needs."""
MAX_STATE_LENGTH: Final = 65_536
"""Longest requestState accepted back (it carries the answers of earlier rounds)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """What a request says about input: the client's capabilities, its answers, the state."""

    capabilities: Mapping[str, Any] = field(default_factory=dict)
    answers: Mapping[str, Any] = field(default_factory=dict)
    """`inputResponses`, by the key of the request each answers (unknown keys are ignored)."""
    state: str | None = None
    """The `requestState` echoed back, exactly as sent; None on a first call."""

    def can_answer(self, method: str) -> bool:
        """Whether the client declared the capability an input request of `method` needs;
        elicitation means form mode (an empty `elicitation: {}` is form mode too)."""
        declared = self.capabilities.get(CAPABILITY_OF.get(method, ""))
        if not isinstance(declared, dict):
            return False
        if method == "elicitation/create":
            return "form" in declared or "url" not in declared
        return True


def retry_of(inbound: Inbound) -> Retry:
    """The input side of a request. Legacy-era requests have no capabilities here, so nothing
    is ever asked of them.

    Raises:
        ProtocolError: -32602 for `inputResponses` or `requestState` of the wrong type.
    """
    if inbound.era != "modern":
        return Retry()
    params = inbound.params
    meta = params.get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
    answers = params.get("inputResponses")
    state = params.get("requestState")
    if answers is not None and not isinstance(answers, dict):
        raise refused_input("inputResponses must be an object")
    if state is not None and not isinstance(state, str):
        raise refused_input("requestState must be a string")
    return Retry(capabilities if isinstance(capabilities, dict) else {}, answers or {}, state)


@dataclass(frozen=True, slots=True)
class InputRequired:
    """A call that cannot complete yet: its answer asks the client for input."""

    result: dict[str, Any]


def input_required(requests: Mapping[str, Any], state: str) -> InputRequired:
    """The `input_required` answer asking `requests` ({key: {method, params}})."""
    return InputRequired({"resultType": "input_required", "inputRequests": dict(requests),
                          "requestState": state})


def elicitation(message: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A form-mode elicitation request."""
    return {"method": "elicitation/create",
            "params": {"mode": "form", "message": message, "requestedSchema": dict(schema)}}


def refused_input(reason: str) -> ProtocolError:
    """The answer to input that cannot be used: a tampered, expired, replayed or foreign
    requestState, or answers of the wrong shape."""
    return ProtocolError(INVALID_PARAMS, f"Invalid params: {reason}", {"reason": reason})


def missing_capability(target: str, method: str, era: str) -> ProtocolError:
    """A call that cannot run without asking what the client cannot answer: -32021 naming the
    capability (2026-07-28); legacy clients, who cannot be asked at all, get -32602."""
    capability = CAPABILITY_OF[method]
    # Its HTTP status (400 at 2026-07-28, 200 in the legacy era) comes from replies.http_status.
    if era != "modern":
        return ProtocolError(INVALID_PARAMS, f"{target} needs a client that answers {method} "
                             "requests (MCP 2026-07-28 with the client capability "
                             f"{capability})", {"requiredCapabilities": {capability: {}}})
    return ProtocolError(MISSING_REQUIRED_CLIENT_CAPABILITY,
                         f"{target} needs the client capability {capability}, which this "
                         "request does not declare",
                         {"requiredCapabilities": {capability: {}}})
