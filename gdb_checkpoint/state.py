"""ProcessState <-> bytes: the versioned JSON that a checkpoint stores beside its memory.

Format 1: a JSON object {"format": 1, "pid", "arch", "program": {path, build_id}, "maps":
[[start, end, perms, offset, path]], "threads": [{lwp, gregs, fpregs, xstate (base64), signo,
sigmask, siginfo}], "brk", "auxv": [[k, v]], "fds": [[fd, path, pos, flags]], "cwd", "xsave_layout":
{component: [offset, size]}, "hidden_fds", "cmdline"}. No pickle: a stored checkpoint is data, never code."""

import base64
import json

from .errors import CheckpointError
from .model import FdInfo, LiveMapping, ProcessState, ProgramIdentity, ThreadState

FORMAT = 1


def dumps(state: ProcessState) -> bytes:
    doc = {
        "format": FORMAT,
        "pid": state.pid,
        "arch": state.arch_name,
        "program": {"path": state.program.path, "build_id": state.program.build_id},
        "maps": [[m.start, m.end, m.perms, m.offset, m.path] for m in state.maps],
        "threads": [{"lwp": t.lwp, "gregs": _b64(t.gregs), "fpregs": _b64(t.fpregs),
                     "xstate": _b64(t.xstate), "signo": t.signo, "sigmask": t.sigmask,
                     "siginfo": _b64(t.siginfo)}
                    for t in state.threads],
        "brk": state.brk,
        "auxv": [list(p) for p in state.auxv],
        "fds": [[f.fd, f.path, f.pos, f.flags] for f in state.fds],
        "cwd": state.cwd,
        "xsave_layout": {str(k): list(v) for k, v in (state.xsave_layout or {}).items()},
        "hidden_fds": list(state.hidden_fds),
        "cmdline": state.cmdline,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def loads(raw: bytes, name: str = "checkpoint") -> ProcessState:
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise CheckpointError(f"{name}: state format {doc.get('format')} is not one this "
                                  f"gdb-checkpoint reads (it reads {FORMAT})")
        return ProcessState(
            pid=doc["pid"], arch_name=doc["arch"],
            program=ProgramIdentity(doc["program"]["path"], doc["program"]["build_id"]),
            maps=tuple(LiveMapping(*m) for m in doc["maps"]),
            threads=tuple(ThreadState(lwp=t["lwp"], gregs=_unb64(t["gregs"]),
                                      fpregs=_unb64(t["fpregs"]), xstate=_unb64(t["xstate"]),
                                      signo=t["signo"], sigmask=t["sigmask"],
                                      siginfo=_unb64(t.get("siginfo"))) for t in doc["threads"]),
            brk=doc["brk"], auxv=tuple(tuple(p) for p in doc["auxv"]),
            fds=tuple(FdInfo(*f) for f in doc["fds"]), cwd=doc["cwd"],
            xsave_layout={int(k): tuple(v) for k, v in doc["xsave_layout"].items()},
            hidden_fds=tuple(doc.get("hidden_fds", ())), cmdline=doc.get("cmdline"))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{name}: its saved state is unreadable ({type(e).__name__}: {e})") from None


def _b64(b):
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s):
    return None if s is None else base64.b64decode(s)
