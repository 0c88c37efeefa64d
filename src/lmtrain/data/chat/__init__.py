"""Conversations: read in the layouts people have them in (`conversations.py`), rendered with the model's chat
template into ids and a per-token loss mask (`render.py`, `template.py`)."""
