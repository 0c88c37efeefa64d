"""Evaluation (validation loss, perplexity, a checkpoint evaluated on a split) and generation."""
