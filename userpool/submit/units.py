"""Resource requests with units (request_memory = 2GB), as condor_submit reads them."""

from __future__ import annotations

import math
import re

_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGTP])?B?\s*$", re.IGNORECASE)
_NEGATIVE = re.compile(r"^\s*-\s*[0-9]*\.?[0-9]+\s*([KMGTP])?B?\s*$", re.IGNORECASE)
_FACTORS_KB = {None: None, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3, "P": 1024**4}


def quantity(value: str, default_unit: str) -> int | None:
    """The request in ``default_unit`` ("M" for memory, "K" for disk), rounded up; None if not a quantity.

    A value that is not a plain number with an optional unit (an expression) returns None
    and is stored as an expression, as condor_submit does.
    """
    if _NEGATIVE.match(value):
        return 0
    match = _QUANTITY.match(value)
    if not match:
        return None
    number = float(match.group(1))
    unit = match.group(2).upper() if match.group(2) else None
    if unit is None:
        return math.ceil(number)
    kilobytes = number * _FACTORS_KB[unit]
    divisor = _FACTORS_KB[default_unit.upper()]
    return math.ceil(kilobytes / divisor)
