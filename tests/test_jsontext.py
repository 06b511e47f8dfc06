"""jsontext: nesting measured without recursion, strings and escapes respected; deep text is never parsed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalizer import jsontext


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


strings = st.lists(st.sampled_from(list('[]{}"\\/ab\n\t\u2028é') + ["\\u005b"]), max_size=12).map("".join)
documents = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), strings),
                         lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                 st.dictionaries(strings, inner, max_size=4)), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(doc=documents, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_depth_is_the_documents_nesting_whatever_its_strings_hold(doc: Any, indent: int | None,
                                                                  ascii_only: bool) -> None:
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    assert jsontext.depth(text) == reference_depth(doc)
    assert jsontext.loads(text, max_depth=reference_depth(doc)) == doc
    if reference_depth(doc):
        with pytest.raises(jsontext.TooDeep):
            jsontext.loads(text, max_depth=reference_depth(doc) - 1)


@pytest.mark.parametrize("text,expected", [
    ('"[[[[["', 0),
    ('["\\"[[["]', 1),            # an escaped quote does not end the string
    ('["\\\\", [[]]]', 3),        # an escaped backslash does: the brackets after it count
    ('{"a": {"b": [1, {"c": []}]}}', 5),
    ("[" * 70_000, 70_000),         # unclosed: as deep as a parser would go before failing
    ("]]]][", 0),                   # not JSON: a parser stops at the first ]
    ('"unterminated [[[', 0),       # not JSON: a string that never ends, nothing a parser descends into
    ("", 0),
])
def test_depth_of_hand_made_texts(text: str, expected: int) -> None:
    assert jsontext.depth(text) == expected


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "[" * 100_000, '{"a":' * 3000 + "1" + "}" * 3000,
                                  '{"events": ' + "[" * 513 + "]" * 513 + "}"])
def test_deep_text_is_refused_before_any_parse(text: str) -> None:
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(text)
    with pytest.raises(ValueError):  # what callers catch
        jsontext.loads(text.encode())


def test_shallow_text_with_many_brackets_parses() -> None:
    """Thousands of sibling arrays (a list of cards) are shallow: counted brackets only trigger the scan."""
    doc = {"cards": [["p1", "T[itle]", 1] for _ in range(5000)]}
    assert jsontext.loads(json.dumps(doc)) == doc


def test_bytes_must_be_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        jsontext.loads(b'{"a": "\xff"}')
