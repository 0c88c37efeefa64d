"""lmtrain: train, evaluate and sample GPT-style language models on WikiText and plain text."""

__version__ = "0.2.0"
