"""The checkpoint operations as GDB/MI commands, for front ends that drive gdb over MI.

-checkpoint-save [NAME], -checkpoint-restore NAME, -checkpoint-list, -checkpoint-delete NAME...,
-checkpoint-diff A [B], -checkpoint-export NAME FILE, -checkpoint-import FILE [NAME],
-checkpoint-back [N]: each returns a result record (gdb 13's gdb.MICommand) and runs the CLI
command's code; errors are MI ^error records with the same one line the CLI prints."""

import os

import gdb

from ..collector import gc_paused
from ..errors import CheckpointError
from . import checkpoint as cli


class _MI(gdb.MICommand):
    def invoke(self, argv):
        try:
            with gc_paused():
                return self.run(argv)
        except CheckpointError as e:
            raise gdb.GdbError(str(e)) from None


def _restored(r):
    return {"name": r.name, "bytes-written": str(r.written), "threads": str(r.threads),
            "seconds": f"{r.seconds:.3f}"}


class Save(_MI):
    def __init__(self):
        super().__init__("-checkpoint-save")

    def run(self, argv):
        if len(argv) > 1:
            raise CheckpointError("Usage: -checkpoint-save [NAME]")
        r = cli.save_current(argv[0] if argv else None)
        return {"name": r.name, "size": str(r.logical), "new-bytes": str(r.new),
                "seconds": f"{r.seconds:.3f}"}


class Restore(_MI):
    def __init__(self):
        super().__init__("-checkpoint-restore")

    def run(self, argv):
        if len(argv) != 1:
            raise CheckpointError("Usage: -checkpoint-restore NAME")
        return _restored(cli.restore_checkpoint(argv[0], undo=argv[0] != "before-restore"))


class List(_MI):
    def __init__(self):
        super().__init__("-checkpoint-list")

    def run(self, argv):
        rows = cli.list_rows()
        return {"checkpoints": [{"name": name, "saved": saved, "threads": str(threads), "pc": pc,
                                 "function": function, "size": str(entry.logical_size),
                                 "new-bytes": str(entry.new_bytes)}
                                for name, saved, threads, pc, function, _, _, entry in rows]}


class Delete(_MI):
    def __init__(self):
        super().__init__("-checkpoint-delete")

    def run(self, argv):
        if not argv:
            raise CheckpointError("Usage: -checkpoint-delete NAME...")
        names, result = cli.delete_checkpoints(argv)
        return {"deleted": names, "freed-bytes": str(result.freed_bytes)}


class Diff(_MI):
    def __init__(self):
        super().__init__("-checkpoint-diff")

    def run(self, argv):
        if len(argv) not in (1, 2):
            raise CheckpointError("Usage: -checkpoint-diff A [B]")
        d = cli.diff_checkpoints(*argv)
        return {"mappings": [{"mapping": m, "bytes": str(b), "pages": str(p)} for m, b, p in d.mappings],
                "only-a": [{"mapping": m, "size": str(n)} for m, n in d.only_a],
                "only-b": [{"mapping": m, "size": str(n)} for m, n in d.only_b],
                "registers": [{"thread": t, "names": list(n)} for t, n in d.registers]}


class Export(_MI):
    def __init__(self):
        super().__init__("-checkpoint-export")

    def run(self, argv):
        if len(argv) != 2:
            raise CheckpointError("Usage: -checkpoint-export NAME FILE")
        r = cli.export_checkpoint(argv[0], os.path.expanduser(argv[1]))
        return {"file": argv[1], "size": str(r.bytes_written), "segments": str(r.segments),
                "seconds": f"{r.seconds:.3f}"}


class Import(_MI):
    def __init__(self):
        super().__init__("-checkpoint-import")

    def run(self, argv):
        if len(argv) not in (1, 2):
            raise CheckpointError("Usage: -checkpoint-import FILE [NAME]")
        r = cli.import_file(os.path.expanduser(argv[0]), argv[1] if len(argv) == 2 else None)
        out = {"name": r.name, "size": str(r.logical), "new-bytes": str(r.new)}
        if r.program is not None:       # filed under another program than the one loaded
            out["program"] = r.program.path or ""
            out["build-id"] = r.program.build_id or ""
        return out


class Back(_MI):
    def __init__(self):
        super().__init__("-checkpoint-back")

    def run(self, argv):
        return _restored(cli.go_back(cli.stops_back(argv, "-checkpoint-back")))


def register():
    if not hasattr(gdb, "MICommand"):
        return          # gdb < 13: the CLI commands still work
    for cls in (Save, Restore, List, Delete, Diff, Export, Import, Back):
        cls()
