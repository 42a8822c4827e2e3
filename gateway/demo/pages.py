"""The demo app's HTML: ``string.Template`` files with every substituted value escaped."""

from __future__ import annotations

import html
from pathlib import Path
from string import Template


class Html(str):
    """Markup that is already safe: substituted as is, never escaped again."""

    __slots__ = ()


class Templates:
    """The templates under gateway/demo/templates, read once when the app is built."""

    def __init__(self) -> None:
        folder = Path(__file__).resolve().parent / "templates"
        self._templates = {
            entry.stem: Template(entry.read_text(encoding="utf-8"))
            for entry in folder.glob("*.html")
        }

    def render(self, template: str, /, **values: str | int) -> Html:
        """Fill ``template``; plain strings are HTML-escaped, ``Html`` values are not."""
        safe = {
            key: value if isinstance(value, Html) else html.escape(str(value))
            for key, value in values.items()
        }
        return Html(self._templates[template].substitute(safe))

    def join(self, parts: list[Html]) -> Html:
        return Html("\n".join(parts))


def human_size(size: int) -> str:
    """``1.5 MiB`` style sizes for the file list."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
