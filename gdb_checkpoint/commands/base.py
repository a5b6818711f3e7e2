"""The base of our commands: turns a CheckpointError into one gdb.GdbError line, nothing else.

`set debug checkpoint on` prints the Python traceback first, for bug reports."""

import traceback

import gdb

from ..collector import gc_paused
from ..errors import CheckpointError


class DebugCheckpoint(gdb.Parameter):
    """When on, errors from checkpoint commands print a Python traceback before the error line."""

    set_doc = "Set debugging of gdb-checkpoint."
    show_doc = "Show debugging of gdb-checkpoint."

    def __init__(self):
        super().__init__("debug checkpoint", gdb.COMMAND_MAINTENANCE, gdb.PARAM_BOOLEAN)
        self.value = False

    def get_show_string(self, value):
        return f"Debugging of gdb-checkpoint is {value}."


DEBUG = None


class CheckpointCommand(gdb.Command):
    """Subclasses define run(argv); invoke() handles parsing and the error contract."""

    arg = ""        # the command's arguments as typed, before gdb.string_to_argv took quotes out

    def invoke(self, arg, from_tty):
        try:
            with gc_paused():
                self.arg = arg
                self.run(gdb.string_to_argv(arg))
        except CheckpointError as e:
            if DEBUG is not None and DEBUG.value:
                traceback.print_exc()
            raise gdb.GdbError(str(e)) from None

    def run(self, argv):
        raise NotImplementedError


def register():
    global DEBUG
    DEBUG = DebugCheckpoint()
