"""Numeric answers: "1/2", "50%", "1,234.5", "3 km", "$12", "-0.25" -> numbers, compared with a
tolerance. The maths evaluators of promptflow's examples compare after rounding; here the
tolerance is explicit (absolute and relative)."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_NUMBER = re.compile(
    r"""(?P<sign>[-+−])?\s*[$€£¥]?\s*
        (?:(?P<num>\d+(?:[,_]\d{3})*(?:\.\d+)?|\.\d+)\s*/\s*(?P<den>\d+(?:\.\d+)?)
          |(?P<value>\d+(?:[,_]\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
        \s*(?P<percent>%)?""",
    re.VERBOSE,
)


def parse_number(value: Any, *, last: bool = False) -> float | None:
    """The first (or ``last``) number in a value: ints and floats as they are, texts searched
    for a fraction, a decimal (thousands separators allowed), a percentage (as a fraction of 1)
    or a number followed by a unit. None when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Fraction):
        return float(value)
    matches = list(_NUMBER.finditer(str(value)))
    if not matches:
        return None
    match = matches[-1] if last else matches[0]
    if match["num"] is not None:
        denominator = float(match["den"])
        if denominator == 0:
            return None
        number = float(match["num"].replace(",", "").replace("_", "")) / denominator
    else:
        number = float(match["value"].replace(",", "").replace("_", ""))
    if match["sign"] in ("-", "−"):
        number = -number
    if match["percent"]:
        number /= 100
    return number if math.isfinite(number) else None


def numeric_match(answer: Any, expected: Any, *, abs_tol: float = 1e-6, rel_tol: float = 0.0,
                  last: bool = False) -> float | None:
    """1.0 when both parse and agree within the tolerance, 0.0 when they differ, None when
    either has no number (a missing score, not a wrong one)."""
    a, b = parse_number(answer, last=last), parse_number(expected)
    if a is None or b is None:
        return None
    return float(math.isclose(a, b, abs_tol=abs_tol, rel_tol=rel_tol))


def cosine_similarity(a: Any, b: Any) -> float | None:
    """Cosine similarity of two vectors; None when either is empty, all zeros or the lengths
    differ (nothing to score, which is not a score of 0)."""
    if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)):
        return None
    if not a or len(a) != len(b):
        return None
    dot = math.fsum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(float(x) ** 2 for x in a)) * math.sqrt(
        math.fsum(float(y) ** 2 for y in b))
    return dot / norm if norm else None
