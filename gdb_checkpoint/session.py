"""What one gdb session remembers about checkpoints: open stores, default names, the auto ring.

No gdb: commands/checkpoint.py owns one Session and asks it; tests drive it directly."""

import os

from .history import History
from .store import Store

AUTO_PREFIX = "auto-"


class Session:
    def __init__(self):
        self._stores = {}
        self.auto = {}          # (store folder, program key) -> auto checkpoint names, oldest first
        self._histories = {}    # pid -> History of the process with that pid

    def history(self, pid) -> History:
        """The History of process `pid`; a new process (a new run) starts a new one."""
        if pid not in self._histories:
            self._histories = {p: h for p, h in self._histories.items() if _alive(p)}
            self._histories[pid] = History(pid)
        return self._histories[pid]

    def forget(self, names) -> None:
        for history in self._histories.values():
            history.forget(names)
        for ring in self.auto.values():
            ring[:] = [n for n in ring if n not in names]

    def store(self, directory) -> Store:
        directory = os.path.abspath(os.path.expanduser(directory))
        if directory not in self._stores:
            self._stores[directory] = Store(directory)
        return self._stores[directory]

    @staticmethod
    def next_name(store, program) -> str:
        """The next number not yet used as a name by this program's checkpoints."""
        used = [int(n) for n in store.names(program) if n.isdigit()]
        return str(max(used, default=0) + 1)

    def next_auto(self, store, program) -> str:
        used = [n for n in map(_auto_number, store.names(program)) if n is not None]
        return f"{AUTO_PREFIX}{max(used, default=0) + 1}"

    def ring(self, store, program) -> list:
        """The program's automatic checkpoints, oldest first: the store's from earlier sessions
        (so the limit trims them, and `checkpoint back` reaches them), then this session's."""
        key = (str(store.path), program)
        if key not in self.auto:
            self.auto[key] = sorted((n for n in store.names(program) if _auto_number(n) is not None),
                                    key=_auto_number)
        return self.auto[key]

    def trim(self, store, program, limit) -> None:
        """Drop the oldest automatic checkpoints beyond `limit` (0 means no limit)."""
        ring = self.ring(store, program)
        if limit and len(ring) > limit:
            old, ring[:] = ring[:len(ring) - limit], ring[len(ring) - limit:]
            gone = [n for n in old if n in set(store.names(program))]
            if gone:
                store.delete(program, gone, reclaim=False)
            self.forget(old)


def _auto_number(name):
    """N of an automatic checkpoint's name auto-N, else None."""
    tail = name[len(AUTO_PREFIX):]
    return int(tail) if name.startswith(AUTO_PREFIX) and tail.isdecimal() else None


def _alive(pid) -> bool:
    return os.path.exists(f"/proc/{pid}")
