"""Where a save's threads run (pipeline.own_cpu, anywhere): gdb's thread kept to the CPU it is on
and the helper lanes to the others while a save or restore runs, both free again afterwards;
threads that are waited for in bulk (a pool's workers) run anywhere. Judged by the kernel's own
record of each thread's CPUs (sched_getaffinity), whatever the machine has."""

import contextlib
import itertools
import os
import threading

import pytest

from gdb_checkpoint.store import pipeline
from gdb_checkpoint.store.pipeline import anywhere, own_cpu

LANES = itertools.count()


def cpus():
    return os.sched_getaffinity(0)


def in_lane(lane="helper"):
    """The CPUs the thread of `lane` may run on, as it sees them."""
    return pipeline.background(cpus, lane=lane).result()


def test_this_thread_keeps_one_cpu_and_the_helper_lane_the_others_until_the_block_ends():
    allowed = cpus()
    assert in_lane() == allowed                 # the lane's thread exists before the block
    with own_cpu():
        mine = cpus()
        if len(allowed) > 1:
            assert len(mine) == 1 and mine < allowed
            assert in_lane() == allowed - mine
        else:
            assert mine == allowed and in_lane() == allowed
        with own_cpu():                         # nested: nothing changes, nor when it ends
            assert cpus() == mine
        assert cpus() == mine
        if len(allowed) > 1:
            assert in_lane() == allowed - mine
    assert cpus() == allowed
    assert in_lane() == allowed


def test_a_lane_started_inside_the_block_runs_off_this_threads_cpu():
    allowed = cpus()
    lane = f"test-{next(LANES)}"
    with own_cpu():
        mine = cpus()
        assert in_lane(lane) == (allowed - mine if len(allowed) > 1 else allowed)
    assert in_lane(lane) == allowed


def test_anywhere_frees_this_thread_and_the_threads_it_starts_and_a_pools_workers():
    allowed = cpus()
    seen = []
    with own_cpu():
        mine = cpus()
        with anywhere():
            assert cpus() == allowed
            started = threading.Thread(target=lambda: seen.append(cpus()))
            started.start()
            started.join()
        assert seen == [allowed]
        assert cpus() == mine
        with pipeline._pool() as pool:
            assert pool.submit(cpus).result() == allowed
        assert cpus() == mine
    assert cpus() == allowed


@contextlib.contextmanager
def only_on(cpu):
    """This thread kept to `cpu` (as a user's taskset might), then back to what it had."""
    allowed = cpus()
    os.sched_setaffinity(0, {cpu})
    try:
        yield {cpu}
    finally:
        os.sched_setaffinity(0, allowed)


def test_outside_own_cpu_anywhere_changes_nothing():
    with only_on(min(cpus())) as one:
        with anywhere():
            assert cpus() == one
        assert cpus() == one


def test_a_thread_that_may_use_one_cpu_only_is_left_as_it_is():
    allowed = cpus()
    assert in_lane() == allowed                 # started before: a thread starts with its maker's CPUs
    with only_on(max(allowed)) as one:
        with own_cpu():
            assert cpus() == one
            assert in_lane() == allowed
        assert cpus() == one


def test_everything_is_free_again_after_an_error():
    allowed = cpus()
    with pytest.raises(ValueError):
        with own_cpu():
            with anywhere():
                raise ValueError
    assert cpus() == allowed
    assert in_lane() == allowed
    with own_cpu():                             # and the next block places them again
        if len(allowed) > 1:
            assert len(cpus()) == 1


def test_without_sched_getcpu_nothing_is_placed(monkeypatch):
    allowed = cpus()
    monkeypatch.setattr(pipeline, "_sched_getcpu", None)
    with own_cpu():
        assert cpus() == allowed
        assert in_lane() == allowed
    assert cpus() == allowed
