"""The demo app's database, in memory: who is signed in, and the files each user has stored."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class StoredFile:
    """One completed upload, as the gateway's signed completion message described it."""

    id: str  # the message's id, which is also its Idempotency-Key
    user: str
    route: str
    filename: str
    size: int
    content_type: str
    bucket: str
    key: str
    stored_at: datetime
    upload_key: str  # what the gateway's delete path names (the message's upload_key)


@dataclass
class Library:
    """Sessions by cookie token, files by id."""

    sessions: dict[str, str] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)

    def sign_in(self, user: str) -> str:
        """A new session token for ``user`` (the value of the app's own cookie)."""
        token = secrets.token_urlsafe(24)
        self.sessions[token] = user
        return token

    def sign_out(self, token: str | None) -> None:
        if token is not None:
            self.sessions.pop(token, None)

    def user_of(self, token: str | None) -> str | None:
        return self.sessions.get(token) if token else None

    def record(self, stored: StoredFile) -> StoredFile:
        """Record a completion once: a retry (same id) gets the first record back."""
        return self.files.setdefault(stored.id, stored)

    def remove(self, user: str, key: str) -> StoredFile | None:
        """Forget ``user``'s file stored under ``key``; None if there is none."""
        for file_id, stored in list(self.files.items()):
            if stored.user == user and stored.key == key:
                return self.files.pop(file_id)
        return None

    def of(self, user: str) -> list[StoredFile]:
        """``user``'s files, newest first."""
        mine = [f for f in self.files.values() if f.user == user]
        return sorted(mine, key=lambda f: f.stored_at, reverse=True)

    def get(self, user: str, file_id: str) -> StoredFile | None:
        """The file ``file_id`` if ``user`` owns it."""
        stored = self.files.get(file_id)
        return stored if stored is not None and stored.user == user else None
