"""Per process, what was written since each checkpoint this session saved or restored there.

Fed by dirty-tracking scans, it gives saves their base and dirty ranges (incremental saves) and
same-process restores the pages to write. Pure bookkeeping: no gdb, no I/O. Without a working
tracker it knows nothing, and says so (None), so callers fall back to reading and comparing.

Scans are appended to a log; a checkpoint is a position in it, and what changed since a
checkpoint is the union of the entries after its position, merged only when asked (merging
every scan into every checkpoint's list cost 30-110 ms a stop with a dozen checkpoints)."""

from itertools import chain

from .ranges import merge, subtract


class History:
    def __init__(self, pid: int):
        self.pid = pid
        self.tracker = None         # dirty.Tracker while tracking works in this process
        self.failed = None          # why tracking is unavailable, once it failed
        self.base = None            # the checkpoint live memory equals, but for what came after it
        self._log = []              # scan results (lists of page ranges), oldest first
        self._first = 0             # log index of _log[0] (older entries are dropped)
        self._pos = {}              # checkpoint name -> log index from which its changes count

    @property
    def tracking(self) -> bool:
        return self.tracker is not None

    def hidden_fds(self):
        return (self.tracker.uffd,) if self.tracking and self.tracker.uffd is not None else ()

    def written(self, ranges) -> None:
        """A scan's result: these pages may differ from every checkpoint known here."""
        ranges = list(ranges)
        if ranges:
            self._log.append(ranges)

    def lost(self, why: str) -> None:
        """Tracking stopped working (the program closed our descriptor, exec'd): forget it all."""
        self.tracker, self.failed = None, why
        self.base, self._log, self._first, self._pos = None, [], 0, {}

    def saved(self, name: str) -> None:
        self._pos[name] = self._end()
        self.base = name
        self._trim()

    def restored(self, name: str, rescan, rewritten) -> None:
        """Live memory is checkpoint `name` again. `rescan` is what a scan right after the restore
        reported (the restore's own writes and whatever the calls it made wrote); `rewritten`
        the ranges the restore wrote with the checkpoint's bytes. For the other checkpoints all
        of `rescan` may differ now; for `name`, only what the restore didn't rewrite."""
        self.written(rescan)
        self._pos[name] = self._end()
        self.written(subtract(rescan, rewritten))
        self.base = name
        self._trim()

    def forget(self, names) -> None:
        for name in names:
            self._pos.pop(name, None)
            if self.base == name:
                self.base = None
        self._trim()

    def incremental(self):
        """(base, dirty) for the next save, or (None, None) when it must be a full one."""
        if self.tracking and self.base in self._pos:
            return self.base, self._since(self._pos[self.base])
        return None, None

    def changed_since(self, name):
        """Page ranges written since checkpoint `name`, or None when not known here."""
        if self.tracking and name in self._pos:
            return self._since(self._pos[name])
        return None

    def extent(self):
        """(checkpoints known here, page ranges logged): how much bookkeeping a scan feeds."""
        return len(self._pos), sum(len(entry) for entry in self._log)

    def _since(self, index):
        return merge(chain.from_iterable(self._log[index - self._first:]))

    def _end(self):
        return self._first + len(self._log)

    def _trim(self):
        """Drop log entries no checkpoint counts from any more."""
        oldest = min(self._pos.values(), default=self._end())
        if oldest > self._first:
            del self._log[:oldest - self._first]
            self._first = oldest
