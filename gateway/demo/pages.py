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
    """The page's one unit system (IEC, as the gateway's config): ``999 bytes``, ``4.9 KiB``,
    ``20 MiB``; demo.js formats sizes in the browser the same way."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = size / 1024
    units = ("KiB", "MiB", "GiB", "TiB")
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f}".removesuffix(".0") + f" {units[unit]}"


def describe_limits(max_size: int, content_types: tuple[str, ...]) -> str:
    """What a route takes, in a line: ``Accepts image/* up to 20 MiB a file.``"""
    types = "any type" if "*/*" in content_types else ", ".join(content_types)
    return f"Accepts {types} up to {human_size(max_size)} a file."
