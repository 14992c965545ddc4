"""EH-MAM pretraining: masking, curriculum, schedules, targets, losses, EMA, heads, data and loop."""
