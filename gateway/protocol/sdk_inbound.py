"""The SDK's inbound-request checks (`mcp.shared.inbound`), without the rest of the SDK.

`import mcp.shared.inbound` runs `mcp/__init__.py`, which imports the SDK's client and server
(starlette, uvicorn, anyio, opentelemetry, cryptography, ...): about 30 MiB of resident memory
in every gateway process, none of it used. The module itself needs only `mcp_types` and the
standard library, so it is loaded here from the installed SDK's own file, under a name of its
own; the code that runs is the SDK's, at the pinned version.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType


def _load() -> ModuleType:
    name = "gateway._sdk_inbound"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("mcp")  # finds the package without importing it
    if package is None or package.origin is None:
        raise ImportError("the mcp package is not installed")
    source = Path(package.origin).parent / "shared" / "inbound.py"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the body runs
    spec.loader.exec_module(module)
    return module


_sdk = _load()

ERROR_CODE_HTTP_STATUS: Mapping[int, int] = _sdk.ERROR_CODE_HTTP_STATUS
InboundLadderRejection = _sdk.InboundLadderRejection
classify_inbound_request = _sdk.classify_inbound_request
find_duplicated_routing_header = _sdk.find_duplicated_routing_header
validate_mcp_param_headers = _sdk.validate_mcp_param_headers
x_mcp_header_map = _sdk.x_mcp_header_map
