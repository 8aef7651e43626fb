"""Listening sockets for the command line: bound before any app is built, so a port in use is one
clear sentence at startup instead of a traceback from deep inside the event loop.
"""

from __future__ import annotations

import socket

BACKLOG = 128
"""aiohttp's default; the kernel caps it at net.core.somaxconn."""


def listen(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bind and listen on every address `host` resolves to (as aiohttp's own sites would), all on
    one port: with port 0 the first address picks it and the others follow. Connections made
    before the server starts wait in the backlog.

    Raises:
        OSError: the name does not resolve, or an address cannot be bound (in use, not local,
            or a privileged port); nothing stays open.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], bound_port(sockets), *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bound_port(sockets: list[socket.socket]) -> int:
    port: int = sockets[0].getsockname()[1]
    return port


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

