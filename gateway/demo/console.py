"""The demo's terminal: a few readable lines about what happens, while the JSON log (every
request, every event) goes to a file.

Shown: what users did (the app's ``gateway.demo.activity`` lines), every refusal or failure the
gateway answered (``request_refused``/``request_failed``), and any other warning or error.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

ACTIVITY_LOGGER = "gateway.demo.activity"
_PROBLEMS = {"request_refused": "refused", "request_failed": "failed"}
# The access logger's 5xx lines repeat request_failed; werkzeug is moto's server.
_QUIET_LOGGERS = ("aiohttp.access", "werkzeug")


def readable(record: logging.LogRecord) -> str | None:
    """One line for the terminal, or None for a record the terminal does not show."""
    event = record.getMessage()
    if record.name == ACTIVITY_LOGGER:
        return event
    fields = record.__dict__
    if event in _PROBLEMS:
        where = fields.get("path", "")
        return f"{_PROBLEMS[event]} {where}: {fields.get('status', '')} {fields.get('reason', '')}"
    if record.levelno < logging.WARNING or record.name.startswith(_QUIET_LOGGERS):
        return None
    details = [str(fields[name]) for name in ("route", "reason", "detail") if fields.get(name)]
    return " ".join([f"{record.levelname.lower()}: {event}", *details])


class ConsoleHandler(logging.Handler):
    """``HH:MM:SS  <line>`` on ``stream`` for the records ``readable`` keeps."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = readable(record)
            if line is None:
                return
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.stream.write(f"{stamp}  {line}\n")
            self.stream.flush()
        except Exception:  # a terminal gone away must not fail a request
            self.handleError(record)


def attach(stream: TextIO) -> None:
    """Show readable lines on ``stream``: gateway records (after ``logs.configure``) and the
    app's activity, which stays out of the JSON log."""
    handler = ConsoleHandler(stream)
    logging.getLogger().addHandler(handler)
    activity = logging.getLogger(ACTIVITY_LOGGER)
    activity.handlers[:] = [handler]
    activity.setLevel(logging.INFO)
    activity.propagate = False
