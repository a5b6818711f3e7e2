"""Range arithmetic against a byte-set oracle, and its cost on a long session's history."""

import random
import time

from gdb_checkpoint.ranges import covers, intersect, merge, overlaps, subtract


def points(ranges):
    out = set()
    for s, e in ranges:
        out.update(range(s, e))
    return out


def random_ranges(rng):
    return [(a, a + rng.randrange(0, 20)) for a in (rng.randrange(200) for _ in range(rng.randrange(8)))]


def test_every_operation_agrees_with_sets_of_addresses():
    for seed in range(2000):
        rng = random.Random(seed)
        a, b = random_ranges(rng), random_ranges(rng)
        for got, want in ((merge(a), points(a)),
                          (subtract(a, b), points(a) - points(b)),
                          (intersect(a, b), points(a) & points(b))):
            assert points(got) == want, (seed, a, b)
            assert got == merge(got) and all(s < e for s, e in got)     # sorted, disjoint, non-empty
        lo = rng.randrange(200)
        hi = lo + rng.randrange(1, 10)
        assert covers(a, lo, hi) == (set(range(lo, hi)) <= points(a))
        assert overlaps(lo, hi, a) == bool(set(range(lo, hi)) & points(a))


def test_many_small_ranges_against_a_few_big_ones_agree_with_sets_of_addresses():
    # The shapes of a restore: written pages inside (or across the edges of) a few regions, and a
    # rescan minus what was rewritten, most of it held whole by one range (the _held shortcut).
    for seed in range(500):
        rng = random.Random(seed)
        regions = [(a, a + rng.randrange(1, 60)) for a in range(0, 400, rng.randrange(60, 120))]
        pages = [(a, a + rng.randrange(1, 4)) for a in sorted(rng.sample(range(420), rng.randrange(1, 60)))]
        rewritten = [(s - rng.randrange(2), e + rng.randrange(2)) for s, e in pages if rng.random() < 0.9]
        for a, b in ((pages, regions), (regions, pages), (pages, rewritten), (rewritten, pages), (pages, pages)):
            for got, want in ((subtract(a, b), points(a) - points(b)),
                              (intersect(a, b), points(a) & points(b))):
                assert points(got) == want, (seed, a, b)
                assert got == merge(got) and all(s < e for s, e in got)


def test_subtract_and_intersect_are_linear_in_the_number_of_ranges():
    # A session's history holds tens of thousands of page ranges; the first version compared every
    # range with every hole (75 ms a restore at 15,000 ranges, growing with the session).
    pages = [(k << 13, (k << 13) + 4096) for k in range(40_000)]
    started = time.perf_counter()
    assert len(subtract(pages, pages[::2])) == 20_000
    assert len(intersect(pages, pages[1::2])) == 20_000
    assert time.perf_counter() - started < 2.0      # quadratic takes minutes; linear ~0.1 s
