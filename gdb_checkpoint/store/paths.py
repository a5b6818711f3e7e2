"""Where the checkpoint store lives when the user has not said: $GDB_CHECKPOINT_DIR, then XDG state.

Computes a path only; it must not create, open or check anything."""

import os
from pathlib import Path


def default_store_dir(env=os.environ) -> Path:
    """$GDB_CHECKPOINT_DIR, else $XDG_STATE_HOME/gdb-checkpoint, else ~/.local/state/gdb-checkpoint."""
    explicit = env.get("GDB_CHECKPOINT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    state = env.get("XDG_STATE_HOME")
    # The XDG spec says a relative $XDG_STATE_HOME is invalid and must be ignored.
    if state and os.path.isabs(state):
        return Path(state) / "gdb-checkpoint"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "state" / "gdb-checkpoint"
