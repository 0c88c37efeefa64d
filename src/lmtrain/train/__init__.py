"""Training: schedule, optimizer, runtime, checkpoints, the loop."""
