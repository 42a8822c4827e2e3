"""The unit tier stays pure: a test here that binds, connects or listens on a socket, or starts a
process, fails and names what it tried.

The calls are refused where every client, server and subprocess library ends up
(``socket.socket``'s methods; ``subprocess.Popen``, which asyncio's subprocesses use too; the
``os`` calls that start processes) while a unit test's fixtures are set up, the session-scoped
ones it asks for included (moto, radosgw), and while it runs. Each refusal is also recorded, so a
test whose code caught it still fails. Socket pairs (each event loop's self-pipe) stay allowed:
they reach no network. These hooks are this directory's, so integration and system tests in the
same run are untouched. A test that needs a server belongs in tests/integration or tests/system.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


class ImpureUnitTest(AssertionError):
    """A unit test tried to reach the network or start a process."""


SOCKET_CALLS = ("bind", "connect", "connect_ex", "listen", "sendto")
OS_CALLS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")


@contextlib.contextmanager
def refused(item: pytest.Item) -> Iterator[list[str]]:
    """Sockets and processes refused (and recorded in the list yielded) inside the block."""
    tried: list[str] = []

    def refuse(what: str) -> NoReturn:
        tried.append(what)
        raise ImpureUnitTest(
            f"{item.nodeid} {what}: a unit test opens no socket and starts no process "
            "(move it to tests/integration or tests/system)"
        )

    with pytest.MonkeyPatch.context() as patch:
        for name in SOCKET_CALLS:

            def socket_call(self: socket.socket, *args: Any, _name: str = name) -> NoReturn:
                refuse(f"called socket.{_name}{args!r}")

            patch.setattr(socket.socket, name, socket_call)

        def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> NoReturn:
            refuse(f"started the process {args!r}")

        patch.setattr(subprocess.Popen, "__init__", popen)
        for name in OS_CALLS:
            if hasattr(os, name):

                def os_call(*args: Any, _name: str = name, **kw: Any) -> NoReturn:
                    refuse(f"called os.{_name}")

                patch.setattr(os, name, os_call)
        yield tried


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with refused(item) as tried:
        result = yield
    if tried:
        raise ImpureUnitTest(f"{item.nodeid} (setup): " + "; ".join(tried))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with refused(item) as tried:
        result = yield
    if tried:
        raise ImpureUnitTest(f"{item.nodeid}: " + "; ".join(tried))
    return result
