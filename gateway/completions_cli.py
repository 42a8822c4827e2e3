"""``upload-gateway completions status | retry``: what the sweep has pending, and a sweep now.

Read from S3 alone (gateway/completion/sweep.py), so any host with the config sees what every
instance sees. User ids stay encrypted in the owner records: ``status`` prints user hashes, and
the ids only with ``--show-users``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from .completion.owners import OwnerBook
from .completion.sweep import UNKNOWN_ROUTE, Sweeper
from .config import Config
from .services import completion_for, storage_for
from .storage import open_s3_client
from .upstream import Upstream


@contextlib.asynccontextmanager
async def sweeper(config: Config) -> AsyncIterator[Sweeper]:
    """A sweeper over the config's buckets and upstream, as ``serve`` runs it."""
    async with open_s3_client(config.s3) as client, Upstream.open(config.upstream) as upstream:
        storage = storage_for(config, client)
        completion = completion_for(config, storage, upstream)
        owners = OwnerBook([k.get_secret_value() for k in config.session.keys])
        yield Sweeper(config, storage, completion, owners)


async def status(config: Config, *, show_users: bool) -> list[str]:
    """Pending uploads per route (count, oldest age), each upload, and every dead letter."""
    async with sweeper(config) as sweep:
        pending = await sweep.status()
        letters = await sweep.dead_letters()
        users: dict[str, str] = {}
        if show_users:
            for item in pending:
                if item.user_hash and item.route != UNKNOWN_ROUTE:
                    for owner in await sweep.owners(item.user_hash):
                        users[owner.user_hash] = owner.user
    lines = []
    routes = sorted({item.route for item in pending} | {r.name for r in config.routes})
    for route in routes:
        ages = [item.age for item in pending if item.route == route]
        lines.append(f"route {route}: {len(ages)} pending, oldest {max(ages, default=0):.0f}s")
    for item in sorted(pending, key=lambda p: -p.age):
        who = item.user_hash or "-"
        if show_users and item.user_hash in users:
            who += f" ({users[item.user_hash]})"
        lines.append(
            f"pending {item.key} user {who} route {item.route} age {item.age:.0f}s "
            f"state {item.state} attempts {item.attempts}"
        )
    now = datetime.now(UTC)
    lines.append(f"dead letters: {len(letters)}")
    for letter in letters:
        uploaded = str(letter.get("uploaded", ""))
        with contextlib.suppress(ValueError):
            uploaded = f"{(now - datetime.fromisoformat(uploaded)).total_seconds():.0f}s ago"
        lines.append(
            f"dead {letter.get('upload_key')} user {letter.get('user_hash')} "
            f"route {letter.get('route')} stored {letter.get('stored_key')} "
            f"attempts {letter.get('attempts')} uploaded {uploaded}"
        )
    return lines


async def retry(config: Config, *, dead: bool) -> list[str]:
    """One sweep now, backoff ignored; with ``dead``, every dead letter delivered again too."""
    async with sweeper(config) as sweep:
        report = await sweep.sweep_once(force=True)
        lines = [f"sweep: {name} {count}" for name, count in sorted(report.outcomes.items())]
        if dead:
            outcomes = await sweep.retry_dead()
            lines += [f"dead letters: {name} {n}" for name, n in sorted(outcomes.items())]
    return lines or ["nothing pending"]
