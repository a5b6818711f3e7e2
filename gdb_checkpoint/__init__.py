"""gdb-checkpoint: checkpoint/restore for gdb. Importing this package does nothing; load() registers.

Only commands/ and gdbtarget.py talk to gdb; everything else runs (and is tested) without it."""

__version__ = "0.1.0"


def load():
    """Register the commands and settings with gdb, once per gdb session."""
    from .commands import register
    register()
