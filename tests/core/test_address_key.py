"""`address_key` takes a canonical IPv4 address as its own key without parsing it: the same
key as the parsing path gives, for any text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.engine.abuse import address_key, parsed_key

_octets = st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "010", "-1", "", "١"])


@given(
    st.lists(_octets, min_size=3, max_size=5).map(".".join)
    | st.text(alphabet="0123456789.:%abf\n ", max_size=20)
    | st.ip_addresses().map(str)
)
def test_the_same_key_as_parsing_gives(address: str) -> None:
    assert address_key(address) == parsed_key(address)
