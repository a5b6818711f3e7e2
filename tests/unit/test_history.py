"""History's bookkeeping: what changed since each checkpoint, from scans alone."""

from gdb_checkpoint.history import History

P = 4096


def pages(*numbers):
    return [(n * P, (n + 1) * P) for n in numbers]


def tracked():
    h = History(pid=1)
    h.tracker = object()        # any tracker: History only asks whether there is one
    return h


def test_changes_since_each_checkpoint_are_the_scans_after_it():
    h = tracked()
    h.saved("a")
    h.written(pages(1, 2))
    h.saved("b")
    h.written(pages(2, 7))
    assert h.changed_since("a") == [(1 * P, 3 * P), (7 * P, 8 * P)]
    assert h.changed_since("b") == pages(2, 7)
    assert h.incremental() == ("b", pages(2, 7))


def test_after_a_restore_the_others_see_what_it_changed_and_it_sees_only_leftovers():
    h = tracked()
    h.saved("a")
    h.written(pages(1))
    h.saved("b")
    h.written(pages(5))
    # Restoring a rewrites pages 1 and 5; the calls it made also wrote page 9 (not rewritten).
    h.restored("a", rescan=pages(1, 5, 9), rewritten=pages(1, 5))
    assert h.changed_since("a") == pages(9)
    assert h.changed_since("b") == pages(1, 5, 9)
    assert h.incremental() == ("a", pages(9))


def test_a_restore_of_a_checkpoint_saved_elsewhere_still_keeps_the_others_right():
    h = tracked()
    h.saved("here")
    h.restored("from-another-session", rescan=pages(3, 4), rewritten=pages(3, 4))
    assert h.changed_since("from-another-session") == []
    assert h.changed_since("here") == [(3 * P, 5 * P)]     # adjacent pages come back merged


def test_without_tracking_nothing_is_known():
    h = History(pid=1)
    h.saved("a")
    h.written(pages(1))
    assert h.changed_since("a") is None and h.incremental() == (None, None)


def test_forgotten_checkpoints_are_unknown_and_old_entries_are_dropped():
    h = tracked()
    h.saved("a")
    h.written(pages(1))
    h.saved("b")
    h.written(pages(2))
    h.forget(["a"])
    assert h.changed_since("a") is None
    assert h.changed_since("b") == pages(2)
    assert len(h._log) == 1          # the entry only "a" counted from is gone


def test_lost_tracking_forgets_everything():
    h = tracked()
    h.saved("a")
    h.written(pages(1))
    h.lost("the program closed the descriptor")
    assert not h.tracking and h.failed and h.changed_since("a") is None and h.base is None
