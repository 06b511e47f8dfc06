"""Untrusted JSON text, parsed only after its nesting is known to be shallow.

Python's ``json`` parser recurses once per nested array or object. Under CPython the recursion limit turns a
deep document into a ``RecursionError``; inside Pyodide the WebAssembly/JavaScript stack overflows first, about
5,000 levels down, and that is a *fatal* error of the whole interpreter: every request in flight dies with it,
and no ``except`` runs. So no text from outside (a beacon, a KV record, an origin body) reaches ``json.loads``
before ``depth`` has measured its nesting without recursion, strings and their escapes respected.

``depth`` is linear in the text and runs at C speed (a few replaces, a split and a join, one regular expression,
an accumulate): a document with no more opening brackets than the limit needs no scan at all, since it cannot
nest deeper than it has brackets.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, repeat
from operator import sub
from typing import Any

# Far deeper than any document of the contracts (a beacon nests 4 deep, a record 5), far shallower than the
# ~5,000 levels at which Pyodide's stack overflows, whatever the worker's own frames below the parse. Records
# with fewer opening brackets than this (nearly every profile and item record) need no scan at all.
MAX_DEPTH = 512

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Each bracket becomes one byte: an opening 2, a closing 0; minus one each, a step of +1 or -1.
_STEP = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})


class TooDeep(ValueError):
    """The text nests deeper than allowed; it was not parsed."""


def depth(text: str) -> int:
    """How deep arrays and objects nest in ``text``, brackets inside strings not counted; 0 for a scalar.

    Measured without recursion. For text that is not JSON the figure is an upper bound of what a parser would
    descend before it found the fault.
    """
    # Escapes go first (an escaped backslash, then an escaped quote: JSON reads escapes left to right, and so does
    # str.replace); every quote left then opens or closes a string, so the even pieces between them are structure.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_BRACKET.sub("", "".join(unescaped.split('"')[::2]))
    if not brackets:
        return 0
    steps: map[int] = map(sub, brackets.translate(_STEP).encode("latin-1"), repeat(1))
    deepest: int = max(accumulate(steps))
    return max(0, deepest)


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` of untrusted text; ``TooDeep`` (a ``ValueError``) when it nests past ``max_depth``.

    Bytes are decoded as UTF-8 first (``UnicodeDecodeError``, also a ``ValueError``, when they are not).
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    if text.count("[") + text.count("{") > max_depth and depth(text) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth}")
    return json.loads(text)
