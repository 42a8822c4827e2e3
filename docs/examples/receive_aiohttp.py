"""Receive upload-gateway's messages in an aiohttp app, verified by the standardwebhooks package.

    pip install aiohttp standardwebhooks
    UPLOAD_WEBHOOK_SECRET=whsec_... python receive_aiohttp.py

UPLOAD_WEBHOOK_SECRET is the gateway's webhook.secret in its whsec_ form (docs/webhooks.md says
how to write a plain secret that way). HOST (default 127.0.0.1) and PORT (default 8000; 0 takes
a free one) say where to listen. Messages arrive at each route's forward path, here
/internal/uploads/<route>, which only the gateway should be able to reach.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

MAX_MESSAGE = 64 * 1024  # a message is a few hundred bytes of JSON

VERIFIER = web.AppKey("verifier", Webhook)
# What a real app keeps in its database: the files, and the answer given to each message id.
FILES = web.AppKey("files", dict[str, dict[str, Any]])
ANSWERS = web.AppKey("answers", dict[str, dict[str, Any]])


async def upload_message(request: web.Request) -> web.Response:
    body = await request.content.read(MAX_MESSAGE + 1)
    if len(body) > MAX_MESSAGE:
        return web.json_response({"error": "message too large"}, status=413)
    try:
        # The raw bytes, before any parsing: JSON parsed and written again would not match.
        message = request.app[VERIFIER].verify(body, dict(request.headers))
    except WebhookVerificationError as exc:
        return web.json_response({"error": str(exc)}, status=401)
    # Every delivery of one message has the same webhook-id (its Idempotency-Key too): a repeat
    # gets the first answer again and changes nothing.
    message_id = request.headers["webhook-id"]
    answers = request.app[ANSWERS]
    if message_id in answers:
        return web.json_response(answers[message_id])
    files = request.app[FILES]
    stored = message["object"]
    if message["event"] == "upload.completed":
        files[stored["key"]] = {
            "user": message["user"],
            "filename": message["filename"],
            "size": stored["size"],
        }
        answer = {"recorded": stored["key"]}
    elif message["event"] == "upload.deleted":
        if files.pop(stored["key"], None) is None:
            return web.json_response({"error": "no such file"}, status=404)
        answer = {"deleted": stored["key"]}
    else:
        return web.json_response({"error": "unknown event"}, status=400)
    answers[message_id] = answer
    return web.json_response(answer)


def make_app(secret: str) -> web.Application:
    app = web.Application()
    app[VERIFIER] = Webhook(secret)
    app[FILES] = {}
    app[ANSWERS] = {}
    app.router.add_post("/internal/uploads/{route}", upload_message)
    return app


if __name__ == "__main__":
    secret = os.environ.get("UPLOAD_WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        # The library would read a plain secret as base64 and check with the wrong key.
        sys.exit("UPLOAD_WEBHOOK_SECRET must be webhook.secret in its whsec_ form")
    host = os.environ.get("HOST", "127.0.0.1")
    web.run_app(make_app(secret), host=host, port=int(os.environ.get("PORT", "8000")))
