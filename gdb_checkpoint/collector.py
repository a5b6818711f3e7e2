"""Python's cyclic garbage collector, held off while one of our commands runs."""

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    """Run the block without cyclic garbage collection, which then resumes as it was.

    A save or restore allocates some 10^5 short-lived objects, hardly any of them in cycles, and
    the collections they set off walk gdb's Python objects too: ~1 ms a save, and now and then a
    full collection of 7-12 ms in the middle of one (measured in gdb). Anything cyclic they leave
    is collected as usual afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
