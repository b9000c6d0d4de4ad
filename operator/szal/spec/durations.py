"""Go-style durations: ``ms``, ``s``, ``m``, ``h``, combined and decimal.

``1m30s``, ``1.5s``, ``250ms``, ``2h``. Users of Argo and Tekton write these,
so we parse exactly that shape and print the same shape back (``1m12.4s``).
A bare number is refused: ``10`` is ambiguous and Kubernetes users expect a
unit. The same regular expression is the CRD schema's ``pattern``.
"""

from __future__ import annotations

import re

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|h|m|s))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class DurationError(ValueError):
    """A duration string that is not Go-style (e.g. ``10``, ``1d``, ``-1s``)."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise DurationError naming the text."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise DurationError(
            f"invalid duration {text!r}: use Go-style units ms, s, m, h (e.g. 90s, 1m30s, 1.5s)"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Print seconds like ``1m12.4s``, ``3.2s``, ``250ms``, ``2h0m5s``."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    tenths = round(seconds * 10)
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    secs = rest / 10
    sec_text = f"{secs:.1f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text
