"""How deep JSON nests, counted from its text before any parser runs.

Python's JSON parser recurses once per level, and how deep it may go before
``RecursionError`` differs between interpreters (3.11 stops near 1,000
levels, 3.13 accepts 5,000 and stops only far deeper). Counting the
levels first makes the limit an explicit number, the same everywhere; the
parser then never sees more than that many levels. (The event store counts
the same way for stored events; the analyzer imports nothing from it.)
"""

from __future__ import annotations

import re
from itertools import accumulate

__all__ = ["nesting_depth"]

# A string, or an unterminated one running to the end of the text: skipped
# whole, so brackets inside strings do not count and the scan stays linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(text: str) -> int:
    """How deep objects and arrays nest in the JSON ``text``, counted without recursion."""
    raw = text.encode("utf-8", "surrogatepass")
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
