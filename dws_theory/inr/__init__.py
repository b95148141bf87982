"""Learning on INR weight spaces: batched SIRENs, fitted-INR datasets, baselines, training.

Weight-space batch layout (project-wide contract): ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``
and ``biases[m-1]`` is ``[B, C, d_m]`` for an MLP with widths ``d_0..d_M``; C = 1 for raw INRs.
"""

from .baselines import FlatMLP, PixelClassifier, flatten_weights, permute_hidden, unflatten_weights
from .datasets import TASKS, INRDataset, Recipe, add_data_parser, load_dataset
from .siren import fit_sirens, render, siren_forward, siren_init

# `train` (the function) is deliberately not re-exported: it would shadow the `train` submodule.
from .train import MODELS, TaskInfo, UnsupportedTask, add_train_parser, register_model

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
    "FlatMLP",
    "PixelClassifier",
    "flatten_weights",
    "unflatten_weights",
    "permute_hidden",
    "MODELS",
    "TaskInfo",
    "UnsupportedTask",
    "add_train_parser",
    "register_model",
]
