"""Sandbox upstream: Retently REST v2 and Refiner REST v1 emulated from JSON fixtures.

Off the gateway's request path; nothing under `gateway/` outside this package imports it
except the CLI.
"""

from sandbox.app import DEMO_TOKENS, FIXTURES_DIR, create_sandbox_app

__all__ = ["DEMO_TOKENS", "FIXTURES_DIR", "create_sandbox_app"]
