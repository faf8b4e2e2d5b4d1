"""Errors a user can act on. The CLI prints their message as one block (no traceback on the
terminal; the traceback goes to the failed run's ``error.txt``, and to the terminal with ``--debug``).

Every message names the file or folder concerned and the fix ("delete results/_work/<stage> to
retrain", "rerun the same command to resume from step 400").
"""
from __future__ import annotations


class UserFacingError(Exception):
    """Base: an error whose message alone tells the user what happened and what to do."""


class DataError(UserFacingError, ValueError):
    """A dataset file that exists but cannot be read (truncated, corrupt, wrong shape): names the file."""


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint that cannot be loaded (names the folder to delete to retrain) or written (a full
    disk: the previous checkpoint stays intact; free space and rerun)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training. A KeyboardInterrupt, so ``--all`` stops too; the message
    says from which step a rerun of the same command resumes."""


class NonFiniteLossError(UserFacingError, RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint (torch and
    JAX loops alike)."""
