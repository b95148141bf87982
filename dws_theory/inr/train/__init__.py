"""What a batch goes through and the loop: input normalisation (``normalize``), augmentation
and the exact symmetries (``augment``), metrics (``metrics``), the training loop (``loop``)."""
