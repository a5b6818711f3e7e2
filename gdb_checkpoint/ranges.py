"""Arithmetic on address ranges: lists of (start, end) pairs, end exclusive. Pure functions."""


def merge(ranges) -> list:
    """Sorted, non-overlapping ranges; touching ones joined, empty ones dropped."""
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif s < e:
            out.append((s, e))
    return out


def subtract(ranges, holes) -> list:
    """The parts of `ranges` outside `holes`."""
    out = []
    holes = merge(holes)
    for s, e in merge(ranges):
        for hs, he in holes:
            if he <= s or hs >= e:
                continue
            if hs > s:
                out.append((s, hs))
            s = max(s, he)
        if s < e:
            out.append((s, e))
    return out


def intersect(ranges, other) -> list:
    """The parts of `ranges` inside `other`, merged."""
    return merge((max(lo, a), min(hi, b)) for lo, hi in ranges for a, b in other
                 if max(lo, a) < min(hi, b))


def overlaps(lo, hi, ranges) -> bool:
    return any(a < hi and lo < b for a, b in ranges)


def covers(ranges, lo, hi) -> bool:
    """True when [lo, hi) lies entirely inside the union of `ranges`."""
    return not subtract([(lo, hi)], ranges)
