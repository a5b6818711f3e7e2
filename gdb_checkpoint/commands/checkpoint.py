"""`checkpoint` and its subcommands, `info checkpoints`, and the checkpoint-* settings.

Thin: each command parses its arguments, calls checkpoints.py or the store, and prints a line or
a table. Shadows gdb's fork-based `checkpoint`, which can't handle threads."""

import os
import time

import gdb

from .. import checkpoints
from ..collector import gc_paused
from ..dirty import Tracker
from ..errors import CheckpointError, TargetError
from ..gdbinject import GdbInjector
from ..gdbtarget import GdbTarget, loaded_program, running
from ..restore import human_bytes
from ..session import Session
from ..store import check_name, default_store_dir
from ..store.pipeline import own_cpu
from .base import CheckpointCommand

SESSION = Session()
SETTINGS = {}


# -- settings --------------------------------------------------------------------------------

class CheckpointDir(gdb.Parameter):
    """Defaults to $GDB_CHECKPOINT_DIR, else $XDG_STATE_HOME/gdb-checkpoint, else
~/.local/state/gdb-checkpoint."""

    set_doc = "Set the folder where checkpoints are stored."
    show_doc = "Show the folder where checkpoints are stored."

    def __init__(self):
        super().__init__("checkpoint-dir", gdb.COMMAND_RUNNING, gdb.PARAM_OPTIONAL_FILENAME)
        self.value = str(default_store_dir())

    def get_set_string(self):
        # Absolute: a relative folder would move with the program's `cd`.
        self.value = os.path.abspath(os.path.expanduser(self.value)) if self.value else str(default_store_dir())
        return ""

    def get_show_string(self, value):
        return f'Checkpoints are stored in "{value}".'


class CheckpointUndo(gdb.Parameter):
    """When on, "restore-core-file" first saves checkpoint before-rcore and "checkpoint
restore" saves before-restore, so "checkpoint restore before-rcore" undoes it."""

    set_doc = "Set whether restores first save the current state."
    show_doc = "Show whether restores first save the current state."

    def __init__(self):
        super().__init__("checkpoint-undo", gdb.COMMAND_RUNNING, gdb.PARAM_BOOLEAN)
        self.value = True

    def get_show_string(self, value):
        return f"Saving the state before a restore is {value}."


class CheckpointAuto(gdb.Parameter):
    """When on, every stop of the program saves an automatic checkpoint (auto-N), and
"checkpoint back [N]" returns to the state of the Nth previous stop."""

    set_doc = "Set whether a checkpoint is saved at every stop."
    show_doc = "Show whether a checkpoint is saved at every stop."

    def __init__(self):
        super().__init__("checkpoint-auto", gdb.COMMAND_RUNNING, gdb.PARAM_BOOLEAN)
        self.value = False

    def get_show_string(self, value):
        return f"Saving a checkpoint at every stop is {value}."


class CheckpointAutoLimit(gdb.Parameter):
    """The oldest are deleted beyond this number; "unlimited" (or 0) keeps them all."""

    set_doc = "Set how many automatic checkpoints are kept."
    show_doc = "Show how many automatic checkpoints are kept."

    def __init__(self):
        super().__init__("checkpoint-auto-limit", gdb.COMMAND_RUNNING, gdb.PARAM_UINTEGER)
        self.value = 100

    def get_show_string(self, value):
        return f"The number of automatic checkpoints kept is {value}."


# -- shared helpers ----------------------------------------------------------------------------

def store():
    return SESSION.store(SETTINGS["dir"].value)


def where():
    """(pc, function) of the selected thread's innermost frame, for `checkpoint list`."""
    try:
        frame = gdb.newest_frame()
        return frame.pc(), frame.name() or "??"
    except gdb.error:
        return None, None


def save_current(name=None, target=None, reclaim=True, history=None, prefetched=None):
    """Save the current inferior as `name` (default: the next number); returns the report.

    Incremental when dirty tracking runs in the process: only pages written since the last
    checkpoint saved or restored here are read. `history`: the process's, when tracked_history()
    ran since the program last did (a restore's undo save: a second scan costs 3-4 ms and finds
    nothing); `prefetched`: its pages already being read (prefetch_written)."""
    with own_cpu():                 # gdb's thread and the helper that reads meet several times
        return _save_current(name, target, reclaim, history, prefetched)


def _save_current(name, target, reclaim, history, prefetched):
    target = target or GdbTarget.current()
    st = store()
    key = checkpoints.program_key(target.live().identity)
    if name is None:
        name = SESSION.next_name(st, key)
    check_name(name)                # refuse a bad name before starting to track or read anything
    history = history or tracked_history(target)
    base, dirty = history.incremental()
    if prefetched is None and base is not None:
        # The reading is the longest part of a save: it starts before anything else is looked up.
        prefetched = checkpoints.prefetch_pages(target, st, dirty)
    try:
        if base is not None and base not in st.names(key):
            base = dirty = None     # deleted meanwhile: save in full (save() drops what was read)
        pc, function = where()
        info = {"time": time.time(), "pc": pc, "function": function,
                "program": target.live().identity.path}
    except BaseException:
        if prefetched is not None:
            prefetched.close()      # save() closes it, but isn't reached
        raise
    report = checkpoints.save(target, st, name, info, base=base, dirty=dirty,
                              hidden_fds=history.hidden_fds(), reclaim=reclaim, prefetched=prefetched)
    history.saved(name)
    return report


def tracked_history(target):
    """The process's History, brought up to date with the kernel's record of written pages.

    Tracking starts at the first checkpoint of a process, before its memory is read, so that
    the full first save already includes what starting it wrote (FACTS: userfaultfd WP-async +
    PAGEMAP_SCAN, Linux >= 6.7). Where it can't run, saves and restores compare instead."""
    history = SESSION.history(target.pid)
    if not target.local or os.environ.get("GDB_CHECKPOINT_TRACKING") == "off":
        return history
    if history.tracker is None and history.failed is None:
        try:
            history.tracker = Tracker.start(target.pid, GdbInjector(target.inferior), target.live().maps)
        except CheckpointError as e:    # TrackingError, or an inferior call that failed
            history.lost(str(e))
        target.refresh()                # starting may have split mappings
    else:
        history.written(rescan(history, target))
    return history


def rescan(history, target):
    """Pages written since the last scan (re-armed), or [] when tracking doesn't run."""
    if not history.tracking:
        return []
    try:
        found = history.tracker.scan(target.live().maps)
    except CheckpointError as e:
        history.lost(str(e))
        found = []
    if history.tracker is None or history.tracker.touched_maps:
        target.refresh()                # registering new mappings may have split them
    return found


def undo_saver(name, target, history=None):
    """A before_write hook that saves checkpoint `name` when checkpoint-undo is on, or None.

    With `history` (scanned since the program last ran: save_current), the pages the save will
    store start being read now, by the helper thread, while the restore reads the checkpoint;
    the caller must then close() the hook, run or not."""
    if not SETTINGS["undo"].value:
        return None
    early = checkpoints.prefetch_written(target, store(), history) if history is not None else None
    # Replaced at every restore: its old space is reclaimed now and then, not each time.
    return UndoSave(lambda: gdb.write(save_current(name, target, reclaim=False, history=history,
                                                   prefetched=early).summary() + "\n"), early)


class UndoSave:
    """A before_write hook (undo_saver) and the early read it may own."""

    def __init__(self, run, early=None):
        self._run = run
        self._early = early

    def __call__(self):
        self._run()

    def close(self):
        if self._early is not None:
            self._early.close()


def complete_names(text, word):
    try:
        return [n for n in store().names(current_program()) if n.startswith(word or "")]
    except (CheckpointError, gdb.error):
        return []


def complete_path(text, word):
    """Completions of the path the command line `text` ends with (folders get a trailing /), as
    replacements for gdb's `word`, the part of it after gdb's last word break ('/' is one)."""
    path = "" if not text or text[-1].isspace() else text.split()[-1]
    folder, start = os.path.split(path)
    try:
        names = os.listdir(os.path.expanduser(folder) or ".")
    except OSError:
        return []
    paths = (os.path.join(folder, n) for n in sorted(names) if n.startswith(start))
    cut = len(path) - len(word or "")
    return [(p + "/" if os.path.isdir(os.path.expanduser(p)) else p)[cut:] for p in paths]


def delete_checkpoints(names):
    """Delete `names` of the current program and forget them in the session (CLI and MI).
    Returns the names deleted, each once, and the store's CompactResult."""
    names = list(dict.fromkeys(names))
    result = store().delete(current_program(), names)
    SESSION.forget(names)
    return names, result


def diff_checkpoints(a, b=None):
    """checkpoints.diff of a and b (or the live process) of the current program (CLI and MI)."""
    target = GdbTarget.current() if b is None or running() else None
    return checkpoints.diff(store(), current_program(), a, b, target)


def stops_back(argv, command):
    """N of `command [N]`: a positive number, default 1."""
    if len(argv) > 1 or (argv and (not argv[0].isdecimal() or int(argv[0]) < 1)):
        raise CheckpointError(f"Usage: {command} [N]  (N a positive number)")
    return int(argv[0]) if argv else 1


def go_back(n):
    """Restore the automatic checkpoint of the Nth previous stop and forget the later ones (CLI and MI)."""
    target = GdbTarget.current()
    st = store()
    key = checkpoints.program_key(target.live().identity)
    ring = SESSION.ring(st, key)
    if not SETTINGS["auto"].value and not ring:
        raise CheckpointError("No automatic checkpoints; \"set checkpoint-auto on\" first.")
    if n >= len(ring):
        raise CheckpointError(f"Only {max(len(ring) - 1, 0)} earlier stop"
                              f"{'s are' if len(ring) != 2 else ' is'} recorded.")
    report = restore_checkpoint(ring[-1 - n], target, undo=False)
    delete_checkpoints(ring[len(ring) - n:])     # the later stops: going forward is over
    return report


def export_checkpoint(name, path):
    """Write checkpoint `name` of the current program as an ELF core at `path` (CLI and MI)."""
    return checkpoints.export(store(), current_program(), name, path)


def import_file(path, name=None):
    """Store the core at `path` as checkpoint `name` of its program (CLI and MI).

    With a live process, a gcore core's XSAVE components are kept only where this CPU places them
    (as restore-core-file does); without one, all of them."""
    live = stopped_process()
    try:
        current = program_of(live)
    except TargetError:
        current = None          # no program loaded: nothing to tell it apart from
    return checkpoints.import_core(store(), path, name, next_name=SESSION.next_name,
                                   live_layout=live.xsave_layout if live else None, current=current)


def stopped_process():
    """The live process's facts, or None: no process, or a thread runs (non-stop, `run &`)."""
    if not running():
        return None
    try:
        return GdbTarget.current().live()
    except TargetError:
        return None


def program_of(live):
    """The store's key for the program of `live`, else (None) of the program gdb has loaded: a
    running process's is the same one."""
    return checkpoints.program_key(live.identity if live is not None else loaded_program())


def current_program():
    """The store's key for the program: of the live process, else of the program gdb has loaded."""
    return program_of(stopped_process())


def restore_named(name, target=None, undo=True):
    report = restore_checkpoint(name, target, undo)
    show_restored(report)
    return report


def show_restored(report):
    """A restore's summary, then where the selected thread now stands, as gdb shows it after
    `frame` (or fork `restart`)."""
    gdb.write(report.summary() + "\n")
    try:
        gdb.write(gdb.execute("frame", to_string=True))
    except gdb.error:
        pass            # no frame to show (no symbols, say): the summary has said enough


def restore_checkpoint(name, target=None, undo=True):
    """Restore checkpoint `name` into the current inferior (the CLI and MI commands' one path)."""
    with own_cpu():
        return _restore_checkpoint(name, target, undo)


def _restore_checkpoint(name, target, undo):
    target = target or GdbTarget.current()
    history = tracked_history(target)
    changed = history.changed_since(name)
    # After this scan, before the program runs again: the undo save reads what the scan found.
    hook = undo_saver("before-restore", target, history) if undo else None
    try:
        report = checkpoints.restore(target, store(), name, changed=changed, before_write=hook)
    finally:
        if hook is not None:
            hook.close()
    # Re-arm at once: otherwise the restore's own writes count as changes at the next scan, and
    # every later restore rewrites everything earlier ones wrote (measured: 2-3.5x slower by the 5th).
    history.restored(name, rescan(history, target), report.wrote)
    return report


# -- commands ----------------------------------------------------------------------------------

class Checkpoint(CheckpointCommand):
    """Save, restore and manage checkpoints of the live inferior.

Usage: checkpoint [NAME]
       checkpoint SUBCOMMAND [ARGS]

With no subcommand, saves a checkpoint like "checkpoint save [NAME]".
Checkpoints keep memory, the registers of every thread, the memory map, the
program break and open file offsets, in a store that outlives the process and
the gdb session (see "show checkpoint-dir"). Unlike gdb's fork-based
checkpoints, they work for multi-threaded programs."""

    def __init__(self):
        super().__init__("checkpoint", gdb.COMMAND_RUNNING, gdb.COMPLETE_NONE, prefix=True)

    def run(self, argv):
        CheckpointSave.save(argv, self.arg)


class CheckpointSave(CheckpointCommand):
    """Save the live inferior as a checkpoint.

Usage: checkpoint save [NAME]

NAME is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit;
it defaults to the next number. An existing checkpoint of that name is replaced."""

    def __init__(self):
        super().__init__("checkpoint save", gdb.COMMAND_RUNNING, gdb.COMPLETE_NONE)

    def run(self, argv):
        self.save(argv, self.arg)

    @staticmethod
    def save(argv, typed):
        if len(argv) > 1:
            raise CheckpointError("Too many arguments. Usage: checkpoint save [NAME]")
        typed = typed.strip()
        quoted = len(typed) > 1 and typed[0] == typed[-1] and typed[0] in "'\""
        if argv and argv[0] != (typed[1:-1] if quoted else typed):
            check_name(typed)   # quotes or a backslash inside, which gdb took out: no name has them
        gdb.write(save_current(argv[0] if argv else None).summary() + "\n")


class CheckpointRestore(CheckpointCommand):
    """Bring the inferior back to a checkpoint.

Usage: checkpoint restore NAME

Restores memory, the registers of every thread, the memory map, the program break
and file offsets. Works in the process that saved NAME and in a new process of
the same program. With "set checkpoint-undo on" the current state is saved first
as before-restore."""

    def __init__(self):
        super().__init__("checkpoint restore", gdb.COMMAND_RUNNING)

    def complete(self, text, word):
        return complete_names(text, word)

    def run(self, argv):
        if len(argv) != 1:
            raise CheckpointError("Usage: checkpoint restore NAME")
        restore_named(argv[0], undo=argv[0] != "before-restore")


class CheckpointList(CheckpointCommand):
    """List the checkpoints of the current program.

Usage: checkpoint list"""

    def __init__(self, name="checkpoint list", cls=gdb.COMMAND_RUNNING):
        super().__init__(name, cls, gdb.COMPLETE_NONE)

    def run(self, argv):
        if argv:
            raise CheckpointError("Usage: checkpoint list")
        rows = list_rows()
        if not rows:
            gdb.write("No checkpoints.\n")
            return
        head = ("Name", "Saved", "Threads", "PC", "Function", "Size", "New")
        table = [head] + [r[:7] for r in rows]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
        for row in table:
            gdb.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def list_rows():
    rows = []
    for e in store().list(current_program()):
        pc = e.info.get("pc")
        rows.append((e.name, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created)),
                     e.info.get("threads", "?"), f"{pc:#x}" if pc is not None else "?",
                     e.info.get("function") or _function_at(pc), human_bytes(e.logical_size),
                     human_bytes(e.new_bytes), e))
    return rows


def _function_at(pc):
    """gdb's name for the function at pc (imported cores don't record one), or '?'."""
    try:
        block = gdb.block_for_pc(pc) if pc is not None else None
        return block.function.name if block and block.function else "?"
    except (RuntimeError, gdb.error):
        return "?"


class InfoCheckpoints(CheckpointList):
    """List the checkpoints of the current program.

Usage: info checkpoints"""

    def __init__(self):
        super().__init__("info checkpoints", gdb.COMMAND_STATUS)


class CheckpointDelete(CheckpointCommand):
    """Delete checkpoints.

Usage: checkpoint delete NAME...

Space used by no other checkpoint is freed."""

    def __init__(self):
        super().__init__("checkpoint delete", gdb.COMMAND_RUNNING)

    def complete(self, text, word):
        return complete_names(text, word)

    def run(self, argv):
        if not argv:
            raise CheckpointError("Usage: checkpoint delete NAME...")
        names, result = delete_checkpoints(argv)
        gdb.write(f"Deleted {len(names)} checkpoint{'s' * (len(names) != 1)}; "
                  f"{human_bytes(result.freed_bytes)} freed.\n")


class CheckpointBack(CheckpointCommand):
    """Go back to the state of an earlier stop.

Usage: checkpoint back [N]

With "set checkpoint-auto on", a checkpoint is saved at every stop; this restores
the one N stops back (default 1). Repeating it goes further back."""

    def __init__(self):
        super().__init__("checkpoint back", gdb.COMMAND_RUNNING, gdb.COMPLETE_NONE)

    def run(self, argv):
        show_restored(go_back(stops_back(argv, "checkpoint back")))


class CheckpointDiff(CheckpointCommand):
    """Show what differs between two checkpoints, or a checkpoint and the live process.

Usage: checkpoint diff A [B]

Lists the mappings whose memory differs (bytes and pages), memory only one side
has, and the registers that differ, thread by thread. Without B, compares A
with the live process."""

    def __init__(self):
        super().__init__("checkpoint diff", gdb.COMMAND_RUNNING)

    def complete(self, text, word):
        return complete_names(text, word)

    def run(self, argv):
        if len(argv) not in (1, 2):
            raise CheckpointError("Usage: checkpoint diff A [B]")
        gdb.write("\n".join(diff_checkpoints(*argv).lines()) + "\n")


class CheckpointExport(CheckpointCommand):
    """Write a checkpoint as an ELF core file.

Usage: checkpoint export NAME FILE

FILE is a standard core that stock gdb opens ("gdb PROGRAM FILE": bt, info
threads and print work) and that "restore-core-file" and "checkpoint import"
read back."""

    def __init__(self):
        super().__init__("checkpoint export", gdb.COMMAND_RUNNING)

    def complete(self, text, word):
        if len(gdb.string_to_argv(text)) + (text.endswith(" ") or not text) > 1:
            return complete_path(text, word)    # gdb 13 completes nothing when given COMPLETE_FILENAME here
        return complete_names(text, word)

    def run(self, argv):
        if len(argv) != 2:
            raise CheckpointError("Usage: checkpoint export NAME FILE")
        path = os.path.expanduser(argv[1])
        gdb.write(export_checkpoint(argv[0], path).summary(path) + "\n")


class CheckpointImport(CheckpointCommand):
    """Store an ELF core file as a checkpoint.

Usage: checkpoint import FILE [NAME]

FILE may come from gcore, from the Linux kernel or from "checkpoint export".
The checkpoint belongs to the program FILE was dumped from (its build-id);
NAME defaults to the next number."""

    def __init__(self):
        super().__init__("checkpoint import", gdb.COMMAND_RUNNING, gdb.COMPLETE_FILENAME)

    def run(self, argv):
        if len(argv) not in (1, 2):
            raise CheckpointError("Usage: checkpoint import FILE [NAME]")
        gdb.write(import_file(os.path.expanduser(argv[0]), argv[1] if len(argv) == 2 else None).summary()
                  + "\n")


def on_stop(event):
    """checkpoint-auto: save the state of every stop (errors become one warning line)."""
    if not SETTINGS["auto"].value or not running():
        return
    try:
        with gc_paused():
            target = GdbTarget.current()
            st = store()
            key = checkpoints.program_key(target.live().identity)
            name = SESSION.next_auto(st, key)
            save_current(name, target)
            SESSION.ring(st, key).append(name)
            SESSION.trim(st, key, SETTINGS["limit"].value)
    except CheckpointError as e:
        gdb.write(f"warning: checkpoint-auto: {e}\n", gdb.STDERR)


def register():
    SETTINGS["dir"] = CheckpointDir()
    SETTINGS["undo"] = CheckpointUndo()
    SETTINGS["auto"] = CheckpointAuto()
    SETTINGS["limit"] = CheckpointAutoLimit()
    Checkpoint()
    CheckpointSave()
    CheckpointRestore()
    CheckpointList()
    InfoCheckpoints()
    CheckpointDelete()
    CheckpointBack()
    CheckpointDiff()
    CheckpointImport()
    CheckpointExport()
    gdb.events.stop.connect(on_stop)
