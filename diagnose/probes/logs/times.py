"""Logged times: the date formats of the product and Windows locales, local times to UTC, and the
times of day and days that are placed on the timeline (damaged ones are not)."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from diagnose.compat import UTC, ZoneInfo

_DATETIME = re.compile(
    r"(\d{1,4})([./-])(\d{1,2})[./-](\d{1,4})[ T,]+(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?\s*([AaPp][Mm])?"
)


def parse_datetime(text: str) -> datetime | None:
    """Dates as the product and Windows locales write them: 2011-09-28, 9/28/2011, 28.09.2011, 28/09/2011."""
    m = _DATETIME.search(text)
    if not m:
        return None
    a, sep, b, c, hh, mm, ss, ampm = m.groups()
    ai, bi, ci = int(a), int(b), int(c)
    if len(a) == 4:
        year, month, day = ai, bi, ci
    elif sep == "." or (sep == "/" and ai > 12):
        day, month, year = ai, bi, ci
    else:
        month, day, year = ai, bi, ci
    hour = int(hh)
    if ampm:
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    try:
        return datetime(year, month, day, hour, int(mm), int(ss))
    except ValueError:
        return None


def to_utc(moment: datetime, zone: ZoneInfo | None) -> datetime:
    if zone is None:
        return moment
    return moment.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def clock_seconds(hours: str | bytes, minutes: str | bytes, seconds: str | bytes) -> int | None:
    """Seconds since midnight of a logged time of day, or None when a field is not a time of day
    (`25:00:00`, `-1`, `nan`, a 400-digit number: damaged records are not placed in time)."""
    try:
        h, m, s = int(hours), int(minutes), float(seconds)
    except ValueError:
        return None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):  # also false for nan
        return None
    return h * 3600 + m * 60 + int(s)


@lru_cache(maxsize=4096)
def _day_epoch(date: bytes) -> int | None:
    try:
        d = datetime.strptime(date.decode("ascii"), "%Y-%m-%d")
    except (UnicodeDecodeError, ValueError):
        return None
    if d.year < 1970:
        return None  # before any TMG log; and the timeline could not print it on every platform
    return int((d - datetime(1970, 1, 1)).total_seconds())
