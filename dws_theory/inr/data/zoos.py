"""The model-zoo tasks by name: how each zoo is sized, built or loaded, and read as a collection.

A zoo task (``Task.is_zoo``) predicts a trained network's held-out accuracy from its weights.
Its networks are trained here, not fitted INRs: ``digits-cnn-zoo`` (small CNNs,
:mod:`~dws_theory.inr.data.zoo`) and ``transformer-zoo`` (tiny transformers,
:mod:`~dws_theory.inr.data.transformer_zoo`). ``data`` and ``train`` reach both through
:func:`get_zoo`, so a command never names one zoo's functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ...errors import InputError
from .collection import Collection, from_transformer_zoo, from_zoo
from .transformer_zoo import TASK as TRANSFORMER_TASK
from .transformer_zoo import TransformerZooRecipe, load_transformer_zoo
from .zoo import ZooRecipe, load_zoo

__all__ = ["Zoo", "ZOOS", "STEP_RATIO", "get_zoo"]

# `--fit-steps S` trains a zoo's networks for S // STEP_RATIO to S steps (the default
# recipes' ratio of shortest to longest training, 25 to 800).
STEP_RATIO = 32


@dataclass(frozen=True)
class Zoo:
    """One zoo task: its default recipe, its loader (``load(cache_dir, recipe, *, rebuild,
    progress)``, building and caching on a miss) and its collection for training."""

    task: str
    default: Callable[[], Any]  # the recipe class: its defaults are the zoo of the results
    load: Callable[..., Any]
    collection: Callable[[Any], Collection]

    def recipe(self, n: int | None = None, steps: int | None = None) -> Any:
        """The default recipe, or ``n`` networks trained for at most ``steps`` steps each."""
        recipe = self.default()
        if n is not None:
            recipe = replace(recipe, n=n)
        if steps is not None:
            recipe = replace(recipe, steps=(max(1, steps // STEP_RATIO), steps))
        return recipe


ZOOS: dict[str, Zoo] = {
    z.task: z
    for z in (
        Zoo("digits-cnn-zoo", ZooRecipe, load_zoo, from_zoo),
        Zoo(TRANSFORMER_TASK, TransformerZooRecipe, load_transformer_zoo, from_transformer_zoo),
    )
}


def get_zoo(task: str) -> Zoo:
    if task not in ZOOS:
        raise InputError(f"{task!r} is not a zoo task; zoo tasks: {', '.join(ZOOS)}")
    return ZOOS[task]
