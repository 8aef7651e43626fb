"""The spec format's `input_required`: what a tool or prompt asks of the client before it runs
(2026-07-28 multi-round-trip requests), round by round. Frozen pydantic models, unknown keys
refused; each request's params are checked against the MCP model of its method. Pure.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from mcp_types import CreateMessageRequestParams, ElicitRequestFormParams, RequestParams
from pydantic import BaseModel, Field, ValidationError, model_validator

from gateway.spec.models import SpecModel

InputMethod = Literal["elicitation/create", "sampling/createMessage", "roots/list"]
PARAMS_MODEL: Final[dict[str, type[BaseModel]]] = {
    "elicitation/create": ElicitRequestFormParams,
    "sampling/createMessage": CreateMessageRequestParams,
    "roots/list": RequestParams,
}
"""The MCP model each kind of request's params must fit (elicitation: form mode only)."""
INPUT_KEY: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_ROUNDS: Final = 10
"""Rounds a call may ask in turn (the SDK clients give up after 10)."""


class InputRequestSpec(SpecModel):
    """One request made of the client: an elicitation (form), a sampling or the roots."""

    method: InputMethod
    params: dict[str, Any] = {}
    """The request's params as MCP defines them. Strings are templates over the arguments and
    the answers of earlier rounds (`{input.<key>}`), e.g. `message: 'Rename {id}?'`."""
    required: bool = False
    """When the client did not declare the capability the request needs: refuse the call
    (-32021 naming it) instead of going on without the answer."""

    @model_validator(mode="after")
    def _params_fit_the_method(self) -> InputRequestSpec:
        try:
            PARAMS_MODEL[self.method].model_validate(self.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"params of {self.method}: {where + ': ' if where else ''}"
                             f"{first['msg']}") from None
        return self


InputRound = dict[Annotated[str, Field(pattern=INPUT_KEY)], InputRequestSpec]
"""The requests asked together, by key; their answers come back under the same keys."""


def checked_rounds(rounds: list[InputRound]) -> list[InputRound]:
    """Rounds that can be asked: each asks something, and each key is used once.

    Raises:
        ValueError: an empty round, a key used twice, too many rounds.
    """
    if len(rounds) > MAX_ROUNDS:
        raise ValueError(f"input_required has at most {MAX_ROUNDS} rounds")
    seen: set[str] = set()
    for index, asked in enumerate(rounds):
        if not asked:
            raise ValueError(f"input_required[{index}] asks nothing")
        twice = sorted(seen & set(asked))
        if twice:
            raise ValueError(f"input_required key(s) {', '.join(twice)} used in two rounds")
        seen |= set(asked)
    return rounds
