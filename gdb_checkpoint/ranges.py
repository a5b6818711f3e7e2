"""Arithmetic on address ranges: lists of (start, end) pairs, end exclusive. Pure functions."""

from itertools import islice
from operator import itemgetter, lt

_START, _END = itemgetter(0), itemgetter(1)


def _apart(ranges) -> bool:
    """Whether the list `ranges` is sorted, each range non-empty and apart from the next (not even
    touching): what merge() makes. Checked by C iterators, ~40 us for 1,310 ranges."""
    return (all(map(lt, map(_START, ranges), map(_END, ranges))) and
            all(map(lt, map(_END, ranges), map(_START, islice(ranges, 1, None)))))


def merge(ranges) -> list:
    """Sorted, non-overlapping ranges; touching ones joined, empty ones dropped."""
    ranges = list(map(tuple, ranges))
    if _apart(ranges):
        return ranges           # merged already, as scans and most results are: 0.28 -> 0.18 ms (1,310)
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif s < e:
            out.append((s, e))
    return out


def subtract(ranges, holes) -> list:
    """The parts of `ranges` outside `holes`: one sweep over both, merged, lists."""
    out = []
    holes = merge(holes)
    h = 0
    for s, e in merge(ranges):
        while h < len(holes) and holes[h][1] <= s:
            h += 1                  # holes wholly before this range are before every later one
        k = h
        while k < len(holes) and holes[k][0] < e:
            hs, he = holes[k]
            if hs > s:
                out.append((s, hs))
            s = max(s, he)
            k += 1
        if s < e:
            out.append((s, e))
    return out


def intersect(ranges, other) -> list:
    """The parts of `ranges` inside `other`, merged: one sweep over both, merged, lists."""
    a, b = merge(ranges), merge(other)
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return merge(out)


def overlaps(lo, hi, ranges) -> bool:
    return any(a < hi and lo < b and a < b for a, b in ranges)


def covers(ranges, lo, hi) -> bool:
    """True when [lo, hi) lies entirely inside the union of `ranges`."""
    return not subtract([(lo, hi)], ranges)
