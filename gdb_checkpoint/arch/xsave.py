"""The XSAVE area (NT_X86_XSTATE, PTRACE_GETREGSET): its header, components and a safe merge.

Pure bytes in, bytes out. Component offsets differ between CPUs (AMD packs AVX-512 right after
AVX; gdb 13 assumes Intel's offsets), so every layout is passed in, never assumed."""

import struct

LEGACY_SIZE = 512            # the FXSAVE area: x87, MXCSR, xmm0-15
SW_RESERVED = 464            # the kernel puts XCR0 here in ptrace and core dumps
HEADER_OFFSET = 512          # XSTATE_BV, XCOMP_BV, then reserved, 64 bytes
HEADER_SIZE = 64
MXCSR_OFFSET = 24

COMPONENT_NAMES = {2: "AVX", 3: "MPX bounds", 4: "MPX config", 5: "AVX-512 opmask",
                   6: "AVX-512 ZMM_Hi256", 7: "AVX-512 Hi16_ZMM", 9: "PKRU",
                   17: "AMX tile config", 18: "AMX tile data"}
AVX512 = frozenset((5, 6, 7))

# Where gdb 13 reads and writes each component (i387-tdep.c), whatever the CPU says: cores
# written by gcore use this layout, which is wrong for AVX-512 on AMD CPUs.
GDB_LAYOUT = {2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64),
              6: (1152, 512), 7: (1664, 1024), 9: (2688, 8)}


def xcr0(area: bytes) -> int:
    return struct.unpack_from("<Q", area, SW_RESERVED)[0] if len(area) >= SW_RESERVED + 8 else 0


def xstate_bv(area: bytes) -> int:
    return struct.unpack_from("<Q", area, HEADER_OFFSET)[0] if len(area) >= HEADER_OFFSET + 8 else 0


def components(mask: int):
    """The extended (non-legacy) component numbers set in an XCR0 or XSTATE_BV mask."""
    return [i for i in range(2, 64) if mask >> i & 1]


def merge(live: bytes, saved: bytes, saved_layout: dict, live_layout: dict, trusted) -> tuple:
    """Write `saved` state over a `live` XSAVE buffer; return (new buffer, component numbers kept live).

    Legacy area and the XSTATE_BV bits of x87/SSE come from `saved`. An extended component comes
    from `saved` when it is in `trusted`, both layouts place it, and both buffers hold it; the
    others keep their live bytes and live XSTATE_BV bit. The result has the live buffer's size,
    which PTRACE_SETREGSET requires."""
    out = bytearray(live)
    out[0:SW_RESERVED] = saved[0:SW_RESERVED]
    saved_bv, live_bv = xstate_bv(saved), xstate_bv(live)
    bv = (live_bv & ~0b11) | (saved_bv & 0b11)
    kept = []
    for comp in components(xcr0(live) | live_bv):
        src, dst = saved_layout.get(comp), live_layout.get(comp)
        usable = (comp in trusted and src and dst and src[1] == dst[1]
                  and src[0] + src[1] <= len(saved) and dst[0] + dst[1] <= len(out))
        if not usable:
            if saved_bv >> comp & 1:
                kept.append(comp)
            continue
        off, size = src
        out[dst[0]:dst[0] + size] = saved[off:off + size]
        bv = (bv & ~(1 << comp)) | (saved_bv & (1 << comp))
    # Saved state of components this CPU doesn't have at all is lost too: say so.
    kept += [c for c in components(saved_bv) if c not in components(xcr0(live) | live_bv)]
    struct.pack_into("<Q", out, HEADER_OFFSET, bv)
    return bytes(out), kept


def to_gdb_layout(area: bytes, layout: dict) -> tuple:
    """(area, layout) the way gdb 13 reads a core: the components in use moved from where `layout`
    places them to GDB_LAYOUT's offsets, in an area of the size gdb expects for them. Returned as
    given when they already lie there, or when one can't be moved (no place for it, another size,
    past the area's end); gdb then reads what it can, as from a gcore core of this CPU."""
    comps = components(xcr0(area))
    if not layout or all(layout.get(c) == GDB_LAYOUT.get(c) for c in comps):
        return area, layout
    base = LEGACY_SIZE + HEADER_SIZE
    moves = [(layout.get(c), GDB_LAYOUT.get(c)) for c in comps]
    if any(src is None or dst is None or src[1] != dst[1] or src[0] + src[1] > len(area) for src, dst in moves):
        return area, layout
    out = bytearray(max([base] + [dst[0] + dst[1] for _, dst in moves]))
    out[:base] = area[:base]
    for (src, size), (dst, _) in moves:
        out[dst:dst + size] = area[src:src + size]
    return bytes(out), {c: GDB_LAYOUT[c] for c in comps}
