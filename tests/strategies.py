"""Shared hypothesis strategies: random MLP shapes and modes."""

from hypothesis import strategies as st

MODES = ("hidden", "all", "signed")


def mlp_dims(max_depth: int = 5, max_width: int = 4, min_width: int = 1) -> st.SearchStrategy:
    """Widths d_0..d_M with M in 1..max_depth."""
    return st.integers(1, max_depth).flatmap(
        lambda depth: st.lists(
            st.integers(min_width, max_width), min_size=depth + 1, max_size=depth + 1
        ).map(tuple)
    )


modes = st.sampled_from(MODES)
