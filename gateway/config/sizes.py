"""Sizes in the config: ``20MiB``, ``5GB``, ``1.5KiB`` or plain bytes, parsed exactly."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

from .errors import show

MiB = 1024**2
GiB = 1024**3
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": MiB,
    "gib": GiB,
    "tib": 1024**4,
}


def parse_size(value: Any) -> int:
    """Bytes from ``20MiB``, ``5GB``, ``1.5KiB``, ``1048576`` or an int; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _UNITS:
            # Decimal, not float: 123456789012345678901 and 1.1MB must come out exact.
            number = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
            if number == number.to_integral_value():
                return int(number)
    raise ValueError(f"{show(value)} is not a size")


Size = Annotated[int, BeforeValidator(parse_size)]
