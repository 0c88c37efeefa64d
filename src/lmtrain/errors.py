"""Errors the CLI reports on one line, each with its exit code (docs/exit-codes-and-metrics.md lists them)."""

EXIT_OK = 0
EXIT_DOCTOR_ERROR = 1
"""`lmtrain doctor` found at least one ERROR."""
EXIT_USAGE = 2
"""Bad input: flags, files, checkpoints, run folders."""
EXIT_TRAINING_FAILED = 3
"""Training started and failed: non-finite loss, gradients or validation loss; out of memory."""


class LmtrainError(Exception):
    """Base class for errors caused by input the user controls (flags, files, checkpoints)."""

    exit_code = EXIT_USAGE


class ConfigError(LmtrainError, ValueError):
    """An invalid configuration value; the message names the field and how to fix it."""


class DataError(LmtrainError):
    """A missing, corrupt or unreadable dataset, tokenizer or download."""


class CheckpointError(LmtrainError):
    """A missing, incomplete, corrupt or mismatched checkpoint or run folder."""


class TrainingFailed(LmtrainError):
    """Training stopped on a failure (non-finite values, out of memory); the message names the step and the fix."""

    exit_code = EXIT_TRAINING_FAILED


DATA_EXTRA = "pip install 'lmtrain[data]'"
"""How to install the optional readers (pyarrow, zstandard, tokenizers, datasets), named by the errors that need them."""
