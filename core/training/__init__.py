"""Training: the recipe, its Trainer callbacks, checkpoints, and the multi-GPU launch."""
