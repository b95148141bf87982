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


@st.composite
def small_spaces(draw, max_sets: int = 3, max_tensors: int = 4, max_axes: int = 4):
    """Any weight space with a few sets of every kind and a few tensors of up to `max_axes`
    axes (several on one set too): the general front end's inputs, small enough to enumerate."""
    from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace

    sets = [
        NeuronSet(f"s{i}", draw(st.integers(1, 4)), draw(st.sampled_from(list(Kind))))
        for i in range(draw(st.integers(1, max_sets)))
    ]
    names = [s.name for s in sets]
    tensors = [
        Tensor(f"T{i}", tuple(draw(st.lists(st.sampled_from(names), max_size=max_axes))))
        for i in range(draw(st.integers(1, max_tensors)))
    ]
    return WeightSpace(tuple(sets), tuple(tensors))
