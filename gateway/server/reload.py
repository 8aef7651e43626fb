"""Live spec reload: the tree being served, replaced whole on SIGHUP or when its files change.

A reload loads and checks the whole new tree first (in a thread: it is seconds of CPU for a big
tree, not worth stalling calls for) and only a valid tree replaces the old one, by one reference
swap. A request reads the tree once, when it starts, so a call in flight finishes on the tree it
started with. A broken tree is refused with every `file:line` problem in the log, and the last
good one keeps serving. Each reload leaves one log event: `specs_reloaded` or `specs_refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web

from gateway.errors import SpecError
from gateway.settings import spec_environment
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree
from gateway.telemetry.metrics import RELOADS, specs_served

MAX_TREE_DEPTH: Final = 4
"""A tree is a folder of service folders (two levels); deeper is not read."""
WATCH_DEBOUNCE_MS: Final = 300
"""Changes closer together than this are one reload (an editor's save, a ConfigMap swap)."""
log = structlog.get_logger("gateway.reload")


@dataclass(frozen=True, slots=True)
class LoadedSpecs:
    """One loaded tree: what it is (a digest of its files) and when it was loaded."""

    registry: Registry
    digest: str
    loaded_at: datetime


class LiveSpecs:
    """The tree the app serves now. `current` is replaced, never changed."""

    def __init__(self, registry: Registry, source: Path | None,
                 clock: Callable[[], datetime]) -> None:
        self.source = source
        """Where reloads read from; None: a tree given in code, never reloaded."""
        self._clock = clock
        self.current = LoadedSpecs(registry, tree_digest(source) if source else "", clock())
        specs_served(self.current.digest, self.current.loaded_at.timestamp())
        self.last_reload: dict[str, Any] | None = None
        self.reloads: dict[str, int] = {"accepted": 0, "refused": 0}
        self._lock = asyncio.Lock()

    @property
    def registry(self) -> Registry:
        return self.current.registry

    async def reload(self, reason: str) -> bool:
        """Load the tree again; whether it is now served (unchanged counts as served)."""
        if self.source is None:
            return False
        async with self._lock:  # one at a time: a burst of signals is a queue, not a race
            previous = self.current
            try:
                registry, digest = await asyncio.to_thread(_load, self.source)
            except SpecError as exc:
                problems = [str(p) for p in exc.problems]
                self._settled("refused", reason, previous.digest, problems=problems)
                log.warning("specs_refused", reason=reason, serving=previous.digest,
                            problems=problems)
                return False
            if digest != previous.digest:
                self.current = LoadedSpecs(registry, digest, self._clock())
                specs_served(digest, self.current.loaded_at.timestamp(), previous.digest)
            self._settled("accepted", reason, digest, changed=digest != previous.digest)
            log.info("specs_reloaded", reason=reason, digest=digest, previous=previous.digest,
                     changed=digest != previous.digest,
                     services={s.name: len(s.tools) for s in registry.services})
            return True

    def _settled(self, outcome: str, reason: str, digest: str, **extra: Any) -> None:
        self.reloads[outcome] += 1
        RELOADS.labels(outcome).inc()
        self.last_reload = {"outcome": outcome, "reason": reason, "digest": digest,
                            "at": _iso(self._clock()), **extra}

    def describe(self) -> dict[str, Any]:
        """What /readyz shows of the specs."""
        current = self.current
        described: dict[str, Any] = {
            "ok": True, "digest": current.digest, "loaded_at": _iso(current.loaded_at),
            "services": {s.name: len(s.tools) for s in current.registry.services}}
        if self.last_reload is not None:
            described["last_reload"] = self.last_reload
        return described


def tree_digest(root: Path) -> str:
    """A digest of every spec file under `root` (paths and bytes), in a stable order.

    Symbolic links are followed, as the loader follows them: a Kubernetes ConfigMap volume is
    made of links into a hidden `..data` folder that is swapped on update. The hidden `..*`
    folders themselves are skipped (they hold the same files again), and so is anything deeper
    than a spec tree goes (no link loop can make this endless)."""
    digest = hashlib.sha256()
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        relative = Path(folder).relative_to(root)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("..")
                               and len(relative.parts) < MAX_TREE_DEPTH)
        found += [Path(folder) / name for name in files
                  if name.endswith((".yaml", ".yml")) and not name.startswith("..")]
    for path in sorted(found):
        digest.update(str(path.relative_to(root)).encode() + b"\x00")
        digest.update(path.read_bytes() + b"\x00")
    return digest.hexdigest()[:16]


def _load(root: Path) -> tuple[Registry, str]:
    """Raises:
        SpecError: the tree is invalid (or unreadable).
    """
    digest = tree_digest(root)
    return load_tree(root, spec_environment()), digest


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def reloading(specs: LiveSpecs, *, watch: bool
              ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: reload on SIGHUP (in the main thread, where signals can be caught),
    and on file changes when `watch` is on."""

    async def run(_app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()

        def on_hangup() -> None:
            task = loop.create_task(specs.reload("SIGHUP"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        catching = threading.current_thread() is threading.main_thread()
        if catching:
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        watcher = (asyncio.create_task(_watch(specs, specs.source))
                   if watch and specs.source is not None else None)
        try:
            yield
        finally:
            if catching:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in [*tasks, *([watcher] if watcher else [])]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return run


async def _watch(specs: LiveSpecs, source: Path) -> None:
    """Reload after each debounced batch of changes under the tree's folder."""
    from watchfiles import awatch  # imported only when watching is on

    async for _changes in awatch(source, debounce=WATCH_DEBOUNCE_MS, step=50, recursive=True):
        await specs.reload("files changed")
