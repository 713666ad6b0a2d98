"""The fast canonical-JSON path writes exactly what ``rfc8785`` writes, or fails as it does."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from nodes.audit.canonical import MAX_SAFE_INT, canonical_json
from nodes.audit.errors import InvalidEntryError

keys = st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(max_codepoint=127)))
values = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),  # any code point, lone surrogates and controls included
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([MAX_SAFE_INT, -MAX_SAFE_INT, MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1]),
)


@given(st.dictionaries(keys, values, max_size=14))
def test_canonical_json_matches_rfc8785_on_flat_objects(obj: dict[str, object]) -> None:
    try:
        expected = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError:
        with pytest.raises(InvalidEntryError):
            canonical_json(obj)  # type: ignore[arg-type]
        return
    assert canonical_json(obj) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    ["", "\x00\x1f\x7f\x80\x9f", '"\\/\b\f\n\r\t', "\u2028\u2029", "é☃😀", "\ufeff\ufffe"],
)
def test_escapes_and_non_ascii_match_rfc8785(text: str) -> None:
    obj = {"z": text, "a": text[:1], "seq": 7, "n": None}
    assert canonical_json(obj) == rfc8785.dumps(obj)
