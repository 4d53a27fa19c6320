"""Training: the trainer (loop, schedule, evaluation, DDP), the optimizers, the presets, the time estimate, a run's
log (metrics.jsonl), the one background run a server owns, and the runs in a weights folder."""
