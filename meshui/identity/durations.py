"""Durations as people write them on a command line: ``90s``, ``30m``, ``24h``, ``7d``."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"\A(\d{1,6})([smhd])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> dt.timedelta:
    """``ValueError`` for anything but a positive whole number and one unit."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 24h or 7d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
