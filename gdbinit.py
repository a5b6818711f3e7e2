# Loads gdb-checkpoint into gdb: `source /path/to/gdb-checkpoint/gdbinit.py` (e.g. in ~/.gdbinit).
# It adds the checkout's .venv (made by `make setup` with gdb's own Python) and registers the commands.
import glob
import os
import site
import sys

import gdb


def _load_gdb_checkpoint():
    # Not __file__: gdb 13 leaves it naming the outer script when this one is sourced from Python.
    root = os.path.dirname(os.path.abspath(sys._getframe(0).f_code.co_filename))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    found = glob.glob(os.path.join(root, ".venv", "lib", version, "site-packages"))
    if not found:
        gdb.write(f"gdb-checkpoint: not set up for gdb's {version}; run `make setup` in {root}\n")
        return
    site.addsitedir(found[0])
    if root not in sys.path:
        sys.path.insert(0, root)
    import gdb_checkpoint
    gdb_checkpoint.load()


_load_gdb_checkpoint()
del _load_gdb_checkpoint
