"""The errors a user can cause, each carrying one line for gdb to print.

Nothing here imports gdb; commands/base.py turns a CheckpointError into gdb.GdbError."""


class CheckpointError(Exception):
    """Base of every error the user can cause; str() is the one line shown."""


class BadCoreError(CheckpointError):
    """The file is not a well-formed ELF core we can read."""


class MismatchError(CheckpointError):
    """The core does not fit the live inferior (machine, program, threads, memory map)."""


class TargetError(CheckpointError):
    """The live inferior can't be read or written (no process, running threads, refused writes)."""
