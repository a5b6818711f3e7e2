"""Errors the checkpoint store raises: each str() is one user-facing line naming the checkpoint or store.

No I/O and no gdb here; a StoreError is a CheckpointError, so commands show it as one line."""

from ..errors import CheckpointError


class StoreError(CheckpointError):
    """The store can't do what was asked: unreadable, newer format, busy, disk full."""


class CorruptCheckpointError(StoreError):
    """Some of a checkpoint's data fails its hash or is missing; none of it was returned."""


class UnknownCheckpointError(StoreError):
    """No checkpoint of that name for this program."""


class BadNameError(StoreError):
    """A checkpoint name outside [A-Za-z0-9][A-Za-z0-9._-]{0,63}."""
