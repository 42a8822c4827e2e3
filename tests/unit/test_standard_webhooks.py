"""docs/webhooks.md holds the handlers tests/integration/test_standard_webhooks.py runs, whole."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOCS = ROOT / "docs" / "webhooks.md"


def test_the_docs_show_the_handlers_the_tests_run() -> None:
    """docs/webhooks.md holds each tested handler whole, so what readers copy is what passed."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    for name in ("receive_aiohttp.py", "receive_node.mjs"):
        assert (EXAMPLES / name).read_text(encoding="utf-8") in blocks, name
