"""Learning on INR weight spaces: batched SIRENs, fitted-INR datasets, baselines, training.

Weight-space batch layout (project-wide contract): ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``
and ``biases[m-1]`` is ``[B, C, d_m]`` for an MLP with widths ``d_0..d_M``; C = 1 for raw INRs.
"""

from .datasets import TASKS, INRDataset, Recipe, add_data_parser, load_dataset
from .siren import fit_sirens, render, siren_forward, siren_init

__all__ = [
    "TASKS",
    "INRDataset",
    "Recipe",
    "add_data_parser",
    "load_dataset",
    "fit_sirens",
    "render",
    "siren_forward",
    "siren_init",
]
