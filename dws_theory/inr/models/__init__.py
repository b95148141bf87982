"""The weight-space models: what a builder is given (``base``), the builders (``equivariant``:
DWSNet and the NFN peer; ``baselines``: flat MLP, StatNN, pixels) and the model table with
``get_model`` (``table``)."""
