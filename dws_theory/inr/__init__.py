"""Learning on INR weight spaces: tasks, fitted-INR datasets, models, training.

Weight-space batch layout (project-wide contract): ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``
and ``biases[m-1]`` is ``[B, C, d_m]`` for an MLP with widths ``d_0..d_M``; C = 1 for raw INRs.

Modules, in the order data flows: ``signals`` (images, sines) -> ``siren`` (batched fitting)
-> ``datasets`` (recipes, cache, splits) and ``userdata`` (a user's own ``.pt`` collection)
-> ``normalize`` / ``augment`` (what a batch goes through) -> ``registry`` + ``models`` (what
can be trained) -> ``train`` (the loop, single process or data-parallel) -> ``cli``.
``tasks`` holds every task's facts.
"""

from .tasks import SOURCES, TASKS, Task, get_task

__all__ = ["SOURCES", "TASKS", "Task", "get_task"]
