"""Training: the parts of a run (parts.py), its data, one optimizer step, the loop and its events and observers,
snapshots and resume, schedules and optimizers, several processes (distributed.py, parallel.py, peers.py)."""
