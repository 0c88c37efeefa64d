"""Conversations: read in the layouts people have them in (`conversations.py`), rendered with the model's chat
template into ids and a per-token loss mask (`render.py`, `template.py`), prepared into shards (`prepare.py`) and
packed into rows (`packing.py`)."""

from typing import Literal

Overflow = Literal["refuse", "split"]
"""What training does with a conversation longer than its rows: refuse it, or split it (`packing.py`)."""
CHATML_NAME = "chatml"
"""--chat-template's name for ChatML (instead of a file: `tokenizer.py`)."""
