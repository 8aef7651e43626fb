"""A stateless MCP gateway in front of SaaS REST APIs."""

__version__ = "0.1.0"
