"""The training engine: the trainer, checkpoints and resume state, the LR schedule, the process group."""
