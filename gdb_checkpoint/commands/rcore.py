"""`restore-core-file` / `rcore`: the inverse of gcore, into the live inferior."""

import os

import gdb

from ..errors import CheckpointError
from ..gdbtarget import GdbTarget
from ..restore import restore_core
from .base import CheckpointCommand
from .checkpoint import SESSION, SETTINGS, show_restored, tracked_history, undo_saver

USAGE = "Usage: restore-core-file [-force] FILE"


class RestoreCoreFile(CheckpointCommand):
    """Restore the live inferior's memory and registers from an ELF core file.

Usage: restore-core-file [-force] FILE

The inverse of "gcore". Writes every writable loadable segment of FILE into the
current inferior and sets the registers of each thread (general, fs_base/gs_base,
x87/SSE and the XSAVE area). FILE may come from "gcore", from the Linux kernel
or from "checkpoint export". Threads are matched by LWP when FILE was dumped
from this process, otherwise in order, main thread first.

Everything is checked before anything is written: the architecture, the program
(build-id), the thread count and that every segment is mapped and writable.
-force skips the check that FILE was dumped from the same program.
With "set checkpoint-undo on" (the default) the state before is saved as
checkpoint before-rcore: "checkpoint restore before-rcore" undoes the restore."""

    def __init__(self):
        super().__init__("restore-core-file", gdb.COMMAND_DATA, gdb.COMPLETE_FILENAME)

    def run(self, argv):
        force, path = parse_force_and_file(argv)
        target = GdbTarget.current()
        history = None
        if SETTINGS["undo"].value and SESSION.history(target.pid).tracking:
            # Scanned now, the undo save's written pages are read while the core is checked. Not
            # when tracking would have to start: a core that fails its checks changes nothing.
            history = tracked_history(target)
        hook = undo_saver("before-rcore", target, history)
        try:
            report = restore_core(target, path, check_program=not force, before_write=hook)
        finally:
            if hook is not None:
                hook.close()
        show_restored(report)


def parse_force_and_file(argv):
    force = False
    rest = []
    for a in argv:
        if a == "-force":
            force = True
        elif a.startswith("-") and a != "-" and not rest:
            raise CheckpointError(f"Unknown option {a}. {USAGE}")
        else:
            rest.append(a)
    if len(rest) != 1:
        raise CheckpointError(("Missing core file name. " if not rest else "Too many arguments. ") + USAGE)
    return force, os.path.expanduser(rest[0])


def register():
    RestoreCoreFile()
    gdb.execute("alias rcore = restore-core-file", to_string=True)
