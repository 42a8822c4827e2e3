"""Listening sockets, bound before anything starts, so that a busy port is one line, not a crash.

``serve`` binds here, in the parent, before it builds the app or forks a worker: a port that is
taken (or an address that is not this machine's) fails at once with ``ListenError``, and
``gateway_listening`` is only ever logged for sockets that really listen.
"""

from __future__ import annotations

import contextlib
import errno
import socket

# What aiohttp's TCPSite uses.
BACKLOG = 128

_HINTS = {
    errno.EADDRINUSE: "another process listens there: stop it or choose another --port",
    errno.EACCES: "ports below 1024 need privileges: choose --port 1024 or above",
    errno.EADDRNOTAVAIL: "this machine has no such address: check --host or listen.host",
}


class ListenError(Exception):
    """One line: the address that could not be listened on, why, and what to do."""


def show(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    """Every (family, address) ``host`` resolves to, as ``loop.create_server`` binds them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {show(host, port)}: {exc.strerror} (check --host or listen.host)"
        ) from None
    return list(dict.fromkeys((family, str(addr[0])) for family, *_, addr in infos))


def _bind(family: int, host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As aiohttp does: a restart binds even while old connections linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # As asyncio does: "::" is IPv6 only, so an IPv4 socket may take the same port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listen(host: str, port: int, *, count: int = 1) -> list[list[socket.socket]]:
    """``count`` sets of listening sockets on every address of ``host``, all on one port.

    With ``count`` > 1 each set is one worker's: the sockets carry SO_REUSEPORT, so the kernel
    spreads new connections over them. Before those are bound, the port is taken once without
    SO_REUSEPORT, since a group another process made with it would otherwise be joined
    silently: two gateways answering on one port. Port 0 picks a free port, the same for all.
    """
    addresses = _addresses(host, port)
    reuse_port = count > 1
    made: list[socket.socket] = []
    groups: list[list[socket.socket]] = []
    try:
        if reuse_port:
            for family, address in addresses:
                with contextlib.closing(_bind(family, address, port, reuse_port=False)) as probe:
                    port = port or probe.getsockname()[1]
        for _ in range(count):
            group = []
            for family, address in addresses:
                sock = _bind(family, address, port, reuse_port=reuse_port)
                made.append(sock)
                sock.listen(BACKLOG)
                sock.setblocking(False)
                group.append(sock)
                # Port 0: every later socket takes the port the first one was given.
                port = port or sock.getsockname()[1]
            groups.append(group)
    except OSError as exc:
        for sock in made:
            sock.close()
        hint = _HINTS.get(exc.errno or 0)
        raise ListenError(
            f"cannot listen on {show(host, port)}: {exc.strerror or exc}"
            + (f" ({hint})" if hint else "")
        ) from None
    return groups


def close_all(groups: list[list[socket.socket]]) -> None:
    """Close every socket of ``groups`` (the parent's copies, once the workers have theirs)."""
    for group in groups:
        for sock in group:
            sock.close()
