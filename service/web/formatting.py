"""The pages' number and time formats (Jinja filters: ``num``, ``lr``, ``duration``, ``ago``,
``time``, ``pretty``)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import yaml

from service.models import utcnow


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A metric for the table: fixed decimals, an em dash when missing."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def fmt_lr(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def fmt_duration(seconds: float | None) -> str:
    """3 s, 4 min 05 s, 2 h 03 min, 3 d 4 h."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def fmt_ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    return fmt_duration((utcnow() - value).total_seconds()) + " ago"


def fmt_time(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def pretty(value: Any) -> str:
    """Nested config/run info as readable YAML (text; the template escapes it)."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=88).strip()
