"""Which asyncio event loop a serving process runs: uvloop when it is installed (the `fast`
extra), else the standard library's; `GATEWAY_EVENT_LOOP` can insist on either.

uvloop runs the sockets, the transports and the scheduling in C: for a `tools/call` that is
about a tenth of the gateway's CPU per call against the standard loop (bench/README.md).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Final, Literal

from gateway.errors import StartupError

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
FAST_EXTRA: Final = "pip install 'mcp-gateway[fast]'"


def loop_factory(choice: EventLoopChoice) -> tuple[LoopFactory, str]:
    """The factory of the event loop to run, and its name (for the startup log).

    Raises:
        StartupError: `uvloop` was asked for and is not installed.
    """
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise StartupError(f"GATEWAY_EVENT_LOOP=uvloop needs uvloop: {FAST_EXTRA}"
                                   ) from None
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return factory, "uvloop"
    return asyncio.new_event_loop, "asyncio"
