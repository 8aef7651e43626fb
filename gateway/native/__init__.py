"""The compiled twins of the per-row hot loops (`_rows.c`: de-identification and the selection
of plain fields) and of the escaping of a result's text copy (`quoted`), used when the
extension was built and `GATEWAY_NATIVE_ROWS` is on. Pruned decoding (gateway/spec/reads.py)
needs `wide_ints` from it, and the one-pass page (`page`, `_pages.c`: gateway/spec/pages.py)
is it, so they too run only then; the twin of the page is the whole path it declines to.

An install without a C compiler has no `_rows`, and then the pure-Python functions run: they
are the reference, and the same tests run against both (tests/native/). `use_native` is applied
once at startup from the settings, before any spec is compiled, like the event loop.
"""

from __future__ import annotations

from types import ModuleType

_built: ModuleType | None
try:
    import gateway.native._rows as _built
except ImportError:  # no compiler at install time: the pure-Python loops run
    _built = None

_enabled = _built is not None


def built() -> bool:
    """Whether the extension was built for this interpreter."""
    return _built is not None


def rows() -> ModuleType | None:
    """The compiled row loops, or None when they are not built or are turned off."""
    return _built if _enabled else None


def use_native(on: bool) -> bool:
    """Turn the compiled loops on (when built) or off for this process; returns whether on."""
    global _enabled
    _enabled = on and _built is not None
    return _enabled
