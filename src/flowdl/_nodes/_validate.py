"""Argument checks shared by the built-in modules' constructors."""

from __future__ import annotations

from typing import Any


def positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`; a clear `ValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{owner}: {name} must be an int >= {minimum}; received "
            f"{type(value).__name__} {value!r}"
        )
    return value
