"""Bulkheads: bounded shares of the upstream connections, so one hung endpoint cannot take them all.

Each service has its own pool of connections (GATEWAY_UPSTREAM_MAX_CONNECTIONS) and each tool
may hold at most `max_in_flight` of them at once. A request that finds no free slot waits a
little (GATEWAY_UPSTREAM_QUEUE_WAIT_S), then is refused as the gateway being busy: it was never
sent, so for a write nothing happened, and the message never blames the upstream for it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import GatewayBusy
from gateway.telemetry.metrics import SLOT_WAITS, UPSTREAM_FAILURES, UPSTREAM_IN_USE


class Bulkheads:
    def __init__(self, per_service: int, wait_s: float) -> None:
        self._per_service = per_service
        self._wait_s = wait_s
        self._slots: dict[tuple[str, ...], asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, service: str, tool: str, tool_cap: int) -> AsyncIterator[None]:
        """Hold one of the tool's slots and one of its service's while the block runs.

        Raises:
            GatewayBusy: no slot came free within the wait.
        """
        tool_slots = self._semaphore((service, tool, str(tool_cap)), tool_cap)
        await self._take(tool_slots, service,
                         f"the tool {tool} has {tool_cap} upstream requests open")
        try:
            service_slots = self._semaphore((service,), self._per_service)
            await self._take(service_slots, service, f"all {self._per_service} connections "
                                                     f"to the {service} upstream are in use")
            in_use = UPSTREAM_IN_USE.labels(service)
            in_use.inc()
            try:
                yield
            finally:
                in_use.dec()
                service_slots.release()
        finally:
            tool_slots.release()

    def _semaphore(self, key: tuple[str, ...], size: int) -> asyncio.Semaphore:
        found = self._slots.get(key)
        if found is None:
            found = self._slots[key] = asyncio.Semaphore(size)
        return found

    async def _take(self, slots: asyncio.Semaphore, service: str, why: str) -> None:
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
            raise GatewayBusy(f"Not sent: the gateway is busy ({why}); retry in {wait} "
                              "seconds.", retry_after_s=wait) from exc
