"""Errors a user can fix: the CLI prints their message on one line and exits with code 2."""


class LmtrainError(Exception):
    """Base class for errors caused by input the user controls (flags, files, checkpoints)."""


class ConfigError(LmtrainError, ValueError):
    """An invalid configuration value; the message names the field and how to fix it."""


class DataError(LmtrainError):
    """A missing, corrupt or unreadable dataset, tokenizer or download."""


class CheckpointError(LmtrainError):
    """A missing, incomplete, corrupt or mismatched checkpoint or run folder."""
