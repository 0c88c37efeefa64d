"""Evaluation (losses, perplexity) and generation."""
