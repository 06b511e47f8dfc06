"""Prices and timestamps as shops' files write them.

**Prices** are read per column, all of its values together, so that one convention holds for the column:
- a currency sign or code before or after the number is dropped (``€3.49``, ``3,49 €``, ``EUR 3.49``,
  ``$1,234.00``, ``CHF 1'234.50``); so are spaces (also no-break ones) and apostrophes between digits;
- a value with both ``,`` and ``.`` uses the last one as its decimal mark, the other for thousands;
- a single mark followed by one or two digits is a decimal mark (``3,49``); followed by exactly three digits,
  or used more than once, it separates thousands (``1,234``, ``1.234.567``): prices have at most two decimals;
- a column whose values disagree (``3,49`` and ``3.49``, or ``,`` as decimals in one row and thousands in
  another) is ambiguous and refused, with two rows that disagree.

**Timestamps**: ISO 8601 (with ``Z`` or an offset; without one, UTC), or a number of seconds, milliseconds or
microseconds since 1970 (GA4's ``event_timestamp``), told apart by magnitude and fixed per file by its first
number: a file that mixes them is refused (a mix is not something to guess about). Fractions are kept to the
second.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from personalizer.digits import ascii_digits

_CODE = re.compile(r"^[A-Za-z]{3}\s*|\s*[A-Za-z]{3}$")
_GROUPED = re.compile(r"[\s\u00a0\u202f']")


class AmbiguousColumn(ValueError):
    """A price column whose values follow no single convention."""


def _bare(text: str) -> str:
    """The number alone: currency signs and codes, spaces and digit-grouping apostrophes removed."""
    t = text.strip()
    while t and unicodedata.category(t[0]) == "Sc":
        t = t[1:].strip()
    while t and unicodedata.category(t[-1]) == "Sc":
        t = t[:-1].strip()
    t = _CODE.sub("", t)
    return _GROUPED.sub("", t)


@dataclass(frozen=True)
class Convention:
    """A price column's decimal mark ('.' or ','; '' when no value had decimals)."""

    decimal: str

    def cents(self, raw: object) -> int:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if raw < 0:
                raise ValueError("negative price")
            return round(raw * 100)
        text = _bare(str(raw))
        negative = text.startswith("-")
        text = text.lstrip("-")
        thousands = {".": ",", ",": "."}.get(self.decimal, "")
        whole, _, frac = text.partition(self.decimal) if self.decimal else (text, "", "")
        whole = whole.replace(thousands, "") if thousands else whole.replace(",", "").replace(".", "")
        if not ascii_digits(whole) or (frac and (not ascii_digits(frac) or len(frac) > 2)):
            raise ValueError(f"bad price {str(raw).strip()!r}")
        if negative:
            raise ValueError("negative price")
        return int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)


def _vote(text: str) -> tuple[str, str] | None:
    """(mark, role) one value says about its marks: role 'decimal' or 'thousands'; None when it has none."""
    marks = [c for c in text if c in ",."]
    if not marks:
        return None
    if len(set(marks)) == 2:
        return marks[-1], "decimal"
    if len(marks) > 1:
        return marks[0], "thousands"
    after = len(text) - text.rindex(marks[0]) - 1
    return marks[0], "thousands" if after == 3 else "decimal"


def price_convention(values: Iterable[tuple[str, object]], column: str) -> Convention:
    """The column's convention from its ``(where, value)`` pairs; ``AmbiguousColumn`` naming two rows that
    disagree."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for where, raw in values:
        if raw is None or isinstance(raw, int | float):
            continue
        vote = _vote(_bare(str(raw)))
        if vote is not None:
            seen.setdefault(vote, (where, str(raw).strip()))
    decimals = {mark for mark, role in seen if role == "decimal"}
    thousands = {mark for mark, role in seen if role == "thousands"}
    conflict = len(decimals) > 1 or decimals & thousands or (not decimals and len(thousands) > 1)
    if conflict:
        (w1, v1), (w2, v2) = list(seen.values())[:2]
        raise AmbiguousColumn(f"the {column} column mixes decimal conventions ({v1!r} at {w1}, {v2!r} at {w2}): "
                              "write every price the same way")
    if decimals:
        return Convention(decimals.pop())
    return Convention({",": ".", ".": ","}.get(next(iter(thousands), ""), ""))


UNITS = ((10**11, 1, "seconds"), (10**14, 1000, "milliseconds"), (10**17, 1_000_000, "microseconds"))


class Timestamps:
    """One file's timestamps: the unit of its numbers is fixed by the first one."""

    def __init__(self, path: object) -> None:
        self.path = path
        self.unit: tuple[int, str, str] | None = None  # (divisor, name, where first seen)

    def seconds(self, raw: object, where: str) -> int:
        if isinstance(raw, datetime):
            return int((raw if raw.tzinfo else raw.replace(tzinfo=UTC)).timestamp())
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return self._number(float(raw), str(raw), where)
        text = str(raw).strip()
        if text and (ascii_digits(text) or _FLOAT.fullmatch(text)):
            return self._number(float(text), text, where)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad timestamp {text!r} (ISO 8601, or seconds, milliseconds or microseconds since "
                             "1970)") from None
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())

    def _number(self, value: float, text: str, where: str) -> int:
        if value < 0:
            raise ValueError(f"bad timestamp {text!r} (before 1970)")
        divisor, name = next(((d, n) for limit, d, n in UNITS if value < limit), (0, ""))
        if not divisor:
            raise ValueError(f"bad timestamp {text!r} (too large for seconds, milliseconds or microseconds)")
        if self.unit is None:
            self.unit = (divisor, name, where)
        elif self.unit[0] != divisor:
            raise MixedUnits(f"{self.path}: timestamps in {self.unit[1]} ({self.unit[2]}) and in {name} ({where}) "
                             "in one file: write them all in one unit")
        return int(value // divisor)


_FLOAT = re.compile(r"[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+")


class MixedUnits(Exception):
    """A file whose numeric timestamps are in more than one unit."""
