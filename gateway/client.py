"""``upload-gateway upload``: an API client that sends a file straight to S3 through a gateway.

Create the upload at an ``api`` route, PUT the bytes to the presigned URL (or the parts, in
parallel, each retried with back-off), complete it, and print the upstream's answer. Ctrl-C
aborts a started upload before exiting, so nothing is left behind in the uploads bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import re
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from yarl import URL

from .localnames import LocalhostResolver

CHUNK = 256 * 1024
# Seconds to open a connection, at most; ``--timeout`` bounds every silence after that.
CONNECT_TIMEOUT = 30.0


class UploadFailed(Exception):
    """One readable line for the person at the terminal.

    ``kept``: the gateway keeps the objects for a retry of the completion, so none are removed.
    """

    def __init__(self, line: str, *, kept: bool = False) -> None:
        super().__init__(line)
        self.kept = kept


class _Retryable(Exception):
    """A call to the gateway that may work if asked again: a 5xx (the app or S3 behind it
    failed) or no answer at all. Only the completion is asked again (it is idempotent,
    docs/http.md); ``run`` turns the rest into an UploadFailed line, so this never escapes."""


# The gateway's answers when the upstream or S3 failed; the completion is idempotent
# (docs/http.md).
_RETRYABLE = frozenset({502, 503, 504})
# What to do about a 5xx to the first call (nothing started yet).
_LATER = {
    502: "the app behind the gateway did not answer; try again once it is up",
    504: "the app behind the gateway did not answer in time; try again later",
    503: "S3 or the gateway is unavailable; try again later",
}
# Statuses of a first call that no api route answered: an api route answers its POST with a
# grant or a refusal of the file or the caller, never with these.
_NOT_AN_API_ROUTE = frozenset({404, 405, 501})


@dataclass
class Progress:
    """Bytes, rate and time left; a live bar on a terminal, plain lines otherwise."""

    total: int
    out: TextIO
    tty: bool
    sent: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_line: float = 0.0
    _last_decile: int = -1

    def add(self, n: int) -> None:
        self.sent += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_line >= 0.1 or self.sent >= self.total:
                self._last_line = now
                self.out.write("\r" + self.line(now))
                self.out.flush()
            return
        decile = 10 * self.sent // self.total if self.total else 10
        if decile != self._last_decile:
            self._last_decile = decile
            self.out.write(self.line(now) + "\n")
            self.out.flush()

    def undo(self, n: int) -> None:
        """A failed part's bytes are sent again: take them off the count."""
        self.sent -= n

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = self.sent / elapsed
        left = (self.total - self.sent) / rate if rate > 0 else 0.0
        pct = 100 * self.sent / self.total if self.total else 100.0
        width = 24
        filled = int(width * pct / 100)
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"[{bar}] {pct:5.1f}% {_size(self.sent)}/{_size(self.total)} "
            f"{_size(int(rate))}/s {int(left)}s left"
        )

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{n}B"  # pragma: no cover


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``-H 'Name: value'`` options into a dict; a malformed one is a usage error."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise UploadFailed(f"bad header {value!r}: use -H 'Name: value'")
        headers[name.strip()] = rest.strip()
    return headers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


@dataclass(frozen=True)
class _Answer:
    """An error answer: its status line ("404 Not Found") and all it says, as one line."""

    status: int
    head: str
    line: str


async def _error_answer(resp: aiohttp.ClientResponse) -> _Answer:
    """A problem's title and detail (or the app's JSON ``error``) as one line; another body
    only when it is one short line of text (an HTML error page says nothing the status
    does not)."""
    text = await resp.text(errors="replace")
    status = f"{resp.status} {resp.reason or ''}".strip()
    try:
        body = json.loads(text)
    except ValueError:
        short = resp.content_type == "text/plain" and text.strip() and len(text) <= 200
        line = f"{status}: {text}" if short and "\n" not in text.strip() else status
        return _Answer(resp.status, status, _one_line(line))
    if not isinstance(body, dict):
        return _Answer(resp.status, status, status)
    title = body.get("title") or body.get("error") or resp.reason
    detail = body.get("detail")
    line = _one_line(f"{resp.status} {title}" + (f": {detail}" if detail else ""))
    return _Answer(resp.status, status, line)


def _transport_failure(exc: BaseException, url: str, timeout: float) -> str:
    """What went wrong on the way to ``url``, without the exception's repr."""
    target = URL(url)
    where = f"{target.scheme}://{target.host}" + (
        f":{target.explicit_port}" if target.explicit_port else ""
    )
    if isinstance(exc, TimeoutError):
        return f"{where}: no answer in {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, socket.gaierror) or not error.errno:
            reason = error.strerror or str(error) or type(error).__name__
        else:
            # asyncio's own text names the address again ("Connect call failed (...)").
            reason = os.strerror(error.errno)
        return f"cannot reach {where}: {reason.lower()}"
    return f"{where}: the connection failed: {_one_line(exc) or type(exc).__name__}"


_WHICH_URL = (
    ": --to must be the URL of a route with protocol: api in the gateway's config, "
    "e.g. https://app.example.com/api/uploads"
)


def _failure(answer: _Answer, url: str, *, first: bool) -> Exception:
    """The exception for an error answer; ``first``: to the call that creates the upload."""
    if first and answer.status >= 500:
        later = _LATER.get(answer.status, "the server failed; try again later")
        return UploadFailed(f"{answer.line}: {later}")
    if answer.status in _RETRYABLE:
        return _Retryable(answer.line)
    if first and answer.status in _NOT_AN_API_ROUTE:
        return UploadFailed(f"{url} is not an api route (it answered {answer.head})" + _WHICH_URL)
    if first and answer.status == 401:
        return UploadFailed(
            f"{answer.line}: pass credentials the app accepts, "
            "e.g. -H 'Authorization: Bearer TOKEN'"
        )
    return UploadFailed(answer.line)


def _is_grant(grant: Any) -> bool:
    """The shape of an api route's answer to ``POST P`` (a single PUT, or parts)."""
    if not isinstance(grant, dict) or not isinstance(grant.get("upload_id"), str):
        return False
    if "url" in grant:
        return isinstance(grant["url"], str) and isinstance(grant.get("headers", {}), dict)
    parts = grant.get("parts")
    return (
        isinstance(grant.get("part_size"), int)
        and isinstance(parts, list)
        and all(
            isinstance(part, dict)
            and isinstance(part.get("part_number"), int)
            and isinstance(part.get("url"), str)
            for part in parts
        )
    )


def _s3_error(body: bytes) -> str:
    """S3's XML error as ``Code: Message``, or the start of whatever else it sent."""
    text = body.decode(errors="replace")
    code = re.search(r"<Code>(.*?)</Code>", text, re.S)
    message = re.search(r"<Message>(.*?)</Message>", text, re.S)
    if code:
        return _one_line(code.group(1) + (f": {message.group(1)}" if message else ""))
    return _one_line(text, 200)


async def _file_range(
    path: Path, offset: int, length: int, progress: Progress, counted: list[int]
) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        remaining = length
        while remaining > 0:
            block = f.read(min(CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            counted[0] += len(block)
            progress.add(len(block))
            yield block


@dataclass
class Uploader:
    """One upload's whole flow against a gateway ``api`` route.

    ``gateway`` carries the caller's headers and the gateway's cookies; ``s3`` carries neither,
    so no credential meant for the gateway ever reaches the bucket's host.
    """

    gateway: aiohttp.ClientSession
    s3: aiohttp.ClientSession
    url: str
    headers: dict[str, str]
    parallel: int = 4
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 0.5
    upload_token: str | None = None
    # Set once the completion was asked for: from then on the gateway owns the objects' fate.
    completing: bool = False
    aborted: bool = False

    async def run(self, path: Path, size: int, sha256: str, progress_out: TextIO) -> Any:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = {"filename": path.name, "content_type": content_type, "size": size, "sha256": sha256}
        try:
            grant = await self._json("POST", self.url, body, first=True)
        except _Retryable as exc:
            # Nothing started: asking again is the user's call, once the cause is gone.
            raise UploadFailed(str(exc)) from None
        if not _is_grant(grant):
            raise UploadFailed(
                f"{self.url} is not an api route (it answered without an upload)" + _WHICH_URL
            )
        self.upload_token = grant["upload_id"]
        progress = Progress(size, progress_out, progress_out.isatty())
        try:
            parts: list[dict[str, Any]] = []
            if "url" in grant:
                await self._put(grant["url"], path, 0, size, progress, grant.get("headers", {}))
            else:
                parts = await self._put_parts(grant, path, size, progress)
        finally:
            progress.finish()
        return await self._complete(parts)

    async def abort(self) -> None:
        """Remove what was sent (best effort: the bucket's lifecycle rule is the backstop)."""
        if self.upload_token is None:
            return
        try:
            async with self.gateway.delete(
                f"{self.url}/{self.upload_token}", headers=self.headers
            ) as resp:
                await resp.read()
                self.aborted = resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            pass

    async def _complete(self, parts: list[dict[str, Any]]) -> Any:
        """Ask for the completion; asked again on a 5xx or no answer, which the gateway makes
        idempotent."""
        self.completing = True
        url = f"{self.url}/{self.upload_token}/complete"
        for attempt in range(self.retries + 1):
            try:
                return await self._json("POST", url, {"parts": parts})
            except _Retryable as exc:
                if attempt == self.retries:
                    raise UploadFailed(
                        f"the file was sent, but completing it failed {attempt + 1} times "
                        f"({exc}): run the upload again later",
                        kept=True,
                    ) from None
            await asyncio.sleep(self.backoff * 2**attempt)
        raise UploadFailed("unreachable")  # pragma: no cover

    async def _json(
        self, method: str, url: str, body: dict[str, Any], *, first: bool = False
    ) -> Any:
        """One JSON call to the gateway. ``first``: the call that creates the upload, whose
        failures are told apart (not an api route, a down app) since nothing has started."""
        try:
            async with self.gateway.request(method, url, json=body, headers=self.headers) as resp:
                if resp.status >= 400:
                    answer = await _error_answer(resp)
                    raise _failure(answer, url, first=first)
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(
                _transport_failure(exc, url, self.timeout)
                + (": is the gateway running there, and is --to right?" if first else "")
            ) from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    async def _put_parts(
        self, grant: dict[str, Any], path: Path, size: int, progress: Progress
    ) -> list[dict[str, Any]]:
        part_size = int(grant["part_size"])
        semaphore = asyncio.Semaphore(max(1, self.parallel))
        failed = asyncio.Event()

        async def one(part: dict[str, Any]) -> dict[str, Any]:
            number = int(part["part_number"])
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            async with semaphore:
                if failed.is_set():
                    raise asyncio.CancelledError
                try:
                    etag = await self._put(part["url"], path, offset, length, progress, {})
                except BaseException:
                    # Set before the slot is released, so no waiting part starts after it.
                    failed.set()
                    raise
            return {"part_number": number, "etag": etag}

        tasks = [asyncio.ensure_future(one(p)) for p in grant["parts"]]
        try:
            # Not gather(): a part that fails for good must stop its siblings at once.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    raise failure
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _put(
        self,
        url: str,
        path: Path,
        offset: int,
        length: int,
        progress: Progress,
        headers: dict[str, str],
    ) -> str:
        for attempt in range(self.retries + 1):
            counted = [0]
            try:
                async with self.s3.put(
                    url,
                    data=_file_range(path, offset, length, progress, counted),
                    headers={**headers, "Content-Length": str(length)},
                ) as resp:
                    body = await resp.read()
                    if resp.status < 300:
                        return resp.headers.get("ETag", "")
                    if resp.status < 500:
                        raise UploadFailed(
                            f"S3 refused the upload ({resp.status}): " + _s3_error(body)
                        )
                    if attempt == self.retries:
                        raise UploadFailed(
                            f"S3 failed {attempt + 1} times ({resp.status}): "
                            + _s3_error(body)
                            + ": try again later"
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == self.retries:
                    raise UploadFailed(
                        "sending to S3 failed: "
                        + _transport_failure(exc, url, self.timeout)
                        + ": try again later (the gateway's s3.public_endpoint_url is where "
                        "files go)"
                    ) from None
            progress.undo(counted[0])
            await asyncio.sleep(self.backoff * 2**attempt)
        raise UploadFailed("unreachable")  # pragma: no cover


async def upload(
    path: Path,
    url: str,
    headers: dict[str, str],
    *,
    parallel: int,
    progress_out: TextIO,
    silence: float = 300.0,
    on_start: Callable[[Uploader], None] | None = None,
) -> Any:
    """Run one upload; on failure or Ctrl-C (cancellation) abort it at the gateway, then re-raise.

    ``on_start`` is handed the Uploader, whose ``completing`` and ``aborted`` say, after an
    interruption, how far it got.

    Once the completion has been asked for, a failure of the gateway or the upstream (5xx) or an
    interruption leaves the objects alone: the completion may be under way or retried, and the
    gateway keeps them for that (docs/http.md, "Completing an upload", step 6).

    ``silence``: seconds any call may stay silent (connecting: CONNECT_TIMEOUT at most).
    """
    # Cookies are kept (the gateway's session between the three calls) even for an IP host.
    jar = aiohttp.CookieJar(unsafe=True)
    limits = aiohttp.ClientTimeout(
        total=None, sock_connect=min(CONNECT_TIMEOUT, silence), sock_read=silence
    )
    async with (
        aiohttp.ClientSession(cookie_jar=jar, timeout=limits) as gateway,
        aiohttp.ClientSession(
            # Presigned URLs may name <bucket>.localhost (the demo's S3): loopback, as RFC 6761.
            connector=aiohttp.TCPConnector(resolver=LocalhostResolver()),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=limits,
        ) as s3,
    ):
        uploader = Uploader(
            gateway, s3, url.rstrip("/"), headers, parallel=parallel, timeout=silence
        )
        if on_start is not None:
            on_start(uploader)
        size = path.stat().st_size  # noqa: ASYNC240 - one stat before any I/O starts
        sha256 = await asyncio.to_thread(_sha256, path)
        try:
            return await uploader.run(path, size, sha256, progress_out)
        except (asyncio.CancelledError, KeyboardInterrupt):
            if not uploader.completing:
                await asyncio.shield(uploader.abort())
            raise
        except UploadFailed as exc:
            if not (uploader.completing and exc.kept):
                await uploader.abort()
            raise


def _interrupted(uploader: Uploader | None) -> str:
    if uploader is None or uploader.upload_token is None:
        return "interrupted: nothing was uploaded"
    if uploader.completing:
        return "interrupted: the upload was sent; the gateway may still complete it"
    if uploader.aborted:
        return "interrupted: the upload was aborted"
    return "interrupted: the upload could not be aborted; the bucket's lifecycle rule removes it"


def _check_url(url: str) -> str | None:
    """Why ``url`` cannot be an api route's URL, or None."""
    try:
        parsed = URL(url)
    except ValueError as exc:
        return f"--to {url}: not a URL ({exc})"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"--to {url}: not an http:// or https:// URL" + _WHICH_URL
    return None


def _check_file(path: Path) -> str | None:
    """Why ``path`` cannot be uploaded, or None: checked before anything is sent."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            return f"{path}: is a directory, not a file"
        if not stat.S_ISREG(mode):
            # A pipe or a device: no size to declare, and opening a pipe would block.
            return f"{path}: not a regular file"
        with path.open("rb"):
            pass
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: cannot read it: {(exc.strerror or str(exc)).lower()}"
    return None


def run(
    file: str,
    url: str,
    header_values: Sequence[str],
    *,
    as_json: bool,
    parallel: int,
    timeout: float = 300.0,
) -> int:
    """The ``upload`` command: 0 done, 1 failed, 2 bad usage, 130 interrupted."""
    path = Path(file)
    problem = _check_url(url) or _check_file(path)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        headers = parse_headers(header_values)
    except UploadFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress_out = sys.stderr if as_json else sys.stdout
    started: list[Uploader] = []
    try:
        answer = asyncio.run(
            upload(
                path,
                url,
                headers,
                parallel=parallel,
                progress_out=progress_out,
                silence=timeout,
                on_start=started.append,
            )
        )
    except UploadFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, TimeoutError) as exc:  # pragma: no cover - the calls map these
        print(f"error: {_transport_failure(exc, url, timeout)}", file=sys.stderr)
        return 1
    except OSError as exc:
        # The file changed under the upload (removed, truncated, its disk gone).
        print(f"error: {file}: reading it failed: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted(started[0] if started else None), file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(answer))
    else:
        print(f"uploaded {path.name} ({_size(path.stat().st_size)})")
        print(json.dumps(answer, indent=2))
    sys.stdout.flush()
    return 0
