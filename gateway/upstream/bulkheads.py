"""Bulkheads: bounded shares of the upstream connections, so one hung endpoint cannot take them all.

Each service has its own pool of connections (GATEWAY_UPSTREAM_MAX_CONNECTIONS) and each tool
may hold at most `max_in_flight` of them at once. A request that finds no free slot waits a
little (GATEWAY_UPSTREAM_QUEUE_WAIT_S), then is refused as the gateway being busy: it was never
sent, so for a write nothing happened, and the message never blames the upstream for it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from gateway.errors import GatewayBusy
from gateway.telemetry.metrics import SLOT_WAITS, UPSTREAM_FAILURES, UPSTREAM_IN_USE, child


class Bulkheads:
    def __init__(self, per_service: int, wait_s: float) -> None:
        self.per_service = per_service
        self._wait_s = wait_s
        self._slots: dict[tuple[str, ...], asyncio.Semaphore] = {}

    def slot(self, service: str, tool: str, tool_cap: int) -> Slot:
        """One of the tool's slots and one of its service's, held while the block runs
        (`async with`).

        Raises:
            GatewayBusy: on entering, when no slot came free within the wait.
        """
        return Slot(self, service, tool, tool_cap)

    def semaphore(self, key: tuple[str, ...], size: int) -> asyncio.Semaphore:
        found = self._slots.get(key)
        if found is None:
            found = self._slots[key] = asyncio.Semaphore(size)
        return found

    async def take(self, slots: asyncio.Semaphore, service: str, why: Callable[[], str]) -> None:
        """`why` is called only when the gateway refuses: the message is built then."""
        if not slots.locked():
            await slots.acquire()  # free: taken without waiting
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await slots.acquire()
            SLOT_WAITS.labels(service, "got_slot").inc()
        except TimeoutError as exc:
            SLOT_WAITS.labels(service, "busy").inc()
            UPSTREAM_FAILURES.labels(service, "busy").inc()
            wait = max(1, math.ceil(self._wait_s))
            raise GatewayBusy(f"Not sent: the gateway is busy ({why()}); retry in {wait} "
                              "seconds.", retry_after_s=wait) from exc


class Slot:
    """One request's hold on its tool's and its service's slots. A class rather than an
    `asynccontextmanager`: this is on every upstream request, and the generator machinery cost
    several times the semaphores' own work."""

    __slots__ = ("_bulkheads", "_cap", "_service", "_service_slots", "_tool", "_tool_slots")

    def __init__(self, bulkheads: Bulkheads, service: str, tool: str, tool_cap: int) -> None:
        self._bulkheads = bulkheads
        self._service = service
        self._tool = tool
        self._cap = tool_cap
        self._tool_slots = bulkheads.semaphore((service, tool, str(tool_cap)), tool_cap)
        self._service_slots = bulkheads.semaphore((service,), bulkheads.per_service)

    async def __aenter__(self) -> None:
        bulkheads, service = self._bulkheads, self._service
        await bulkheads.take(self._tool_slots, service,
                             lambda: f"the tool {self._tool} has {self._cap} upstream requests "
                                     "open")
        try:
            await bulkheads.take(self._service_slots, service,
                                 lambda: f"all {bulkheads.per_service} connections to the "
                                         f"{service} upstream are in use")
        except BaseException:
            self._tool_slots.release()
            raise
        child(UPSTREAM_IN_USE, service).inc()

    async def __aexit__(self, *_exc: object) -> None:
        child(UPSTREAM_IN_USE, self._service).dec()
        self._service_slots.release()
        self._tool_slots.release()
