"""Request ids (gateway/requestids.py): a client's sane X-Request-ID kept, else a fresh one."""

from __future__ import annotations

import re

from gateway.requestids import RequestIds, valid_request_id


def test_request_id_kept_when_sane_else_fresh() -> None:
    """A client's sane X-Request-ID is kept (it ties logs together); anything else is replaced
    by a fresh random one, so log lines cannot be forged or broken by it."""
    assert valid_request_id("abc-1.2:3_x") == "abc-1.2:3_x"
    fresh = {valid_request_id(bad) for bad in (None, "", "a b", "x" * 129, '"}{', "\u00e9")}
    assert len(fresh) == 6
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in fresh)


def test_fresh_request_ids_are_unique_valid_tokens_per_app() -> None:
    """Ids made for requests without one never repeat, within an app or across apps (workers),
    and are themselves sane tokens, so the upstream and the logs carry them unchanged."""
    first, second = RequestIds(), RequestIds()
    made = [first(None) for _ in range(1000)] + [second("bad id") for _ in range(1000)]
    assert len(set(made)) == 2000
    assert all(valid_request_id(value) == value for value in made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert first("kept-1") == "kept-1"
