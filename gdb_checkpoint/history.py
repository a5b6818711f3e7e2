"""Per process, what was written since each checkpoint this session saved or restored there.

Fed by dirty-tracking scans, it gives saves their base and dirty ranges (incremental saves) and
same-process restores the pages to write. Pure bookkeeping: no gdb, no I/O. Without a working
tracker it knows nothing, and says so (None), so callers fall back to reading and comparing."""

from .ranges import merge


class History:
    def __init__(self, pid: int):
        self.pid = pid
        self.tracker = None         # dirty.Tracker while tracking works in this process
        self.failed = None          # why tracking is unavailable, once it failed
        self.base = None            # the checkpoint live memory equals, outside `pending`
        self.pending = []           # page ranges written since `base`
        self.since = {}             # checkpoint name -> page ranges written since it was live

    @property
    def tracking(self) -> bool:
        return self.tracker is not None

    def hidden_fds(self):
        return (self.tracker.uffd,) if self.tracking and self.tracker.uffd is not None else ()

    def written(self, ranges) -> None:
        """A scan's result: these pages may differ from every checkpoint known here."""
        ranges = list(ranges)
        if ranges:
            self.pending = merge(self.pending + ranges)
            for name in self.since:
                self.since[name] = merge(self.since[name] + ranges)

    def lost(self, why: str) -> None:
        """Tracking stopped working (the program closed our descriptor, exec'd): forget it all."""
        self.tracker, self.failed = None, why
        self.base, self.pending, self.since = None, [], {}

    def saved(self, name: str) -> None:
        self.base, self.pending = name, []
        self.since[name] = []

    def restored(self, name: str) -> None:
        """Live memory is checkpoint `name` again: whatever differed from `name` now differs from
        the others too (their own changes are already counted)."""
        undone = self.since.get(name, [])
        for other in self.since:
            self.since[other] = merge(self.since[other] + undone)
        self.since[name] = []
        self.base, self.pending = name, []

    def forget(self, names) -> None:
        for name in names:
            self.since.pop(name, None)
            if self.base == name:
                self.base = None

    def incremental(self):
        """(base, dirty) for the next save, or (None, None) when it must be a full one."""
        if self.tracking and self.base is not None:
            return self.base, list(self.pending)
        return None, None

    def changed_since(self, name):
        """Page ranges written since checkpoint `name`, or None when not known here."""
        if self.tracking and name in self.since:
            return list(self.since[name])
        return None
