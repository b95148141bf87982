"""What the models learn from: tasks and sources (``tasks``), signals (``signals``), batched
SIREN fits (``siren``), fitted datasets with a checked cache (``datasets``, ``cache``), the
CNN zoo (``zoo``), a user's ``--data`` files (``userdata``), the flat parameter layout
(``layout``) and the collection every run reads (``collection``)."""
