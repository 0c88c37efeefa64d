"""The processes of a run and what they tell each other: the world read from torchrun's variables (`world.py`), the
store's heartbeats and first failure (`peers.py`). Below both `train/` and `tasks/`, which score over the same ranks."""
