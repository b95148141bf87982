"""Learning on weight spaces: tasks, fitted-INR datasets, models, training.

Weight-space batch layout (project-wide contract): ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``
and ``biases[m-1]`` is ``[B, C, d_m]`` for an MLP with widths ``d_0..d_M``; C = 1 for raw INRs.

Three packages, data flowing one way: :mod:`~dws_theory.inr.data` (tasks, signals, SIREN fits,
fitted datasets and their cache, the CNN zoo, a user's ``--data`` files, collections) ->
:mod:`~dws_theory.inr.models` (what a builder is given, the builders, the model table) ->
:mod:`~dws_theory.inr.train` (normalisation, augmentation, metrics, the loop); then ``cli``.
"""

from .data.tasks import SOURCES, TASKS, Task, get_task

__all__ = ["SOURCES", "TASKS", "Task", "get_task"]
