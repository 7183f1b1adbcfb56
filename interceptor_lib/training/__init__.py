"""Training: crash-safe checkpoints (more of the training engine comes with the stage notebooks)."""
