"""The XSAVE merge and the policy that decides which parts of a core's XSTATE to believe, and the
x86-64 register table checked against LIEF's decoding of real cores.

Layouts are written out here from Intel's SDM (standard format) and an AMD Zen 4's CPUID leaf 0xD,
not taken from gdb_checkpoint, so a wrong table in the code can't agree with itself."""

import random
import struct

import pytest

from gdb_checkpoint.arch import xsave
from gdb_checkpoint.arch.x86_64 import X86_64
from gdb_checkpoint.core.reader import CoreFile
from gdb_checkpoint.model import Core, ThreadState
from gdb_checkpoint.plan import xsave_policy
from oracles import lief_core

# component -> (offset, size) in the standard (non-compacted) XSAVE format.
INTEL = {2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64), 6: (1152, 512),
         7: (1664, 1024), 9: (2688, 8)}
AMD = {2: (576, 256), 5: (832, 64), 6: (896, 512), 7: (1408, 1024), 9: (2432, 8)}
AVX512_PKRU_XCR0 = 0b10_1110_0111          # x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU
AVX512_XCR0 = 0b1110_0111
AVX_XCR0 = 0b111
SW_RESERVED, HEADER, XCOMP_BV, MXCSR = 464, 512, 520, 24


def pattern(tag: int, size: int) -> bytes:
    return bytes((tag * 37 + i) % 251 for i in range(size))


def area(layout, size, xcr0, bv, tag, xcomp_bv=0):
    """An XSAVE buffer as the kernel lays it out: legacy area, XCR0 in the software-reserved
    bytes, the header, then every component of `layout` filled with its own pattern."""
    buf = bytearray(size)
    buf[0:SW_RESERVED] = pattern(tag, SW_RESERVED)
    struct.pack_into("<Q", buf, SW_RESERVED, xcr0)
    struct.pack_into("<QQ", buf, HEADER, bv, xcomp_bv)
    for comp, (off, length) in layout.items():
        if off + length <= size:
            buf[off:off + length] = pattern(tag + comp, length)
    return bytes(buf)


def piece(buf, where):
    off, size = where
    return buf[off:off + size]


def bv_of(buf):
    return struct.unpack_from("<Q", buf, HEADER)[0]


# -- merge --------------------------------------------------------------------------------------

def test_trusted_components_land_at_the_live_cpu_s_offsets():
    saved = area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)      # as gcore writes it
    live = area(AMD, 2440, AVX512_PKRU_XCR0, 0b11, tag=2)                    # this AMD CPU's
    out, kept = xsave.merge(live, saved, INTEL, AMD, trusted={2, 5, 6, 7, 9})
    for comp in (2, 5, 6, 7, 9):
        assert piece(out, AMD[comp]) == piece(saved, INTEL[comp]), f"component {comp}"
    assert kept == []
    assert bv_of(out) == AVX512_PKRU_XCR0
    assert len(out) == len(live)


def test_untrusted_components_keep_their_live_bytes_and_bits_and_are_reported():
    saved = area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)
    live_bv = 0b10_0010_0111            # live opmask and PKRU in use, the ZMM parts in init state
    live = area(AMD, 2440, AVX512_PKRU_XCR0, live_bv, tag=2)
    out, kept = xsave.merge(live, saved, INTEL, AMD, trusted={2})
    assert piece(out, AMD[2]) == piece(saved, INTEL[2])
    for comp in (5, 6, 7, 9):
        assert piece(out, AMD[comp]) == piece(live, AMD[comp]), f"component {comp}"
    assert bv_of(out) == (live_bv & ~0b100) | (AVX512_PKRU_XCR0 & 0b100)
    assert sorted(kept) == [5, 6, 7, 9]


def test_the_legacy_area_and_x87_sse_bits_come_from_the_core_the_rest_of_the_header_stays_live():
    saved = area(INTEL, 2688, AVX512_XCR0, 0b01, tag=1, xcomp_bv=1 << 63 | 0b111)   # no PKRU there
    live = area(AMD, 2440, AVX512_PKRU_XCR0, 0b11, tag=2)
    out, _ = xsave.merge(live, saved, INTEL, AMD, trusted=set())
    assert out[0:SW_RESERVED] == saved[0:SW_RESERVED]          # x87, MXCSR, xmm0-15
    assert out[SW_RESERVED:HEADER] == live[SW_RESERVED:HEADER]  # the kernel's XCR0 of this CPU
    assert bv_of(out) & 0b11 == 0b01                            # SSE in use, x87 at init, as saved
    # The kernel refuses (EINVAL) a compacted XCOMP_BV or non-zero reserved header bytes.
    assert out[XCOMP_BV:576] == live[XCOMP_BV:576]


@pytest.mark.parametrize("saved_size,live_size", [(2696, 2440), (832, 2696), (2440, 2440)])
def test_the_result_has_the_live_buffer_s_size(saved_size, live_size):
    saved = area(INTEL, saved_size, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)
    live = area(AMD, live_size, AVX512_PKRU_XCR0, 0b11, tag=2)
    out, _ = xsave.merge(live, saved, INTEL, AMD, trusted={2, 5, 6, 7, 9})
    assert len(out) == live_size


def test_a_trusted_component_the_core_s_area_is_too_short_for_stays_live_and_is_reported():
    saved = area(AMD, 832, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)      # AVX only fits
    live = area(AMD, 2440, AVX512_PKRU_XCR0, 0b11, tag=2)
    out, kept = xsave.merge(live, saved, AMD, AMD, trusted={2, 5, 6, 7, 9})
    assert piece(out, AMD[2]) == piece(saved, AMD[2])
    assert piece(out, AMD[7]) == piece(live, AMD[7])
    assert 7 in kept and 9 in kept


def test_a_component_whose_size_differs_between_layouts_is_not_copied():
    odd = {**AMD, 6: (896, 256)}
    saved = area(odd, 2440, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)
    live = area(AMD, 2440, AVX512_PKRU_XCR0, 0b11, tag=2)
    out, kept = xsave.merge(live, saved, odd, AMD, trusted={2, 5, 6, 7, 9})
    assert piece(out, AMD[6]) == piece(live, AMD[6])
    assert 6 in kept


def test_the_result_never_claims_a_component_the_live_cpu_lacks():
    saved = area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)
    live = area({2: (576, 256)}, 832, AVX_XCR0, 0b111, tag=2)
    out, _ = xsave.merge(live, saved, INTEL, {2: (576, 256)}, trusted={2, 5, 6, 7, 9})
    assert bv_of(out) & ~AVX_XCR0 == 0
    assert len(out) == 832 and piece(out, (576, 256)) == piece(saved, INTEL[2])


def test_saved_state_the_live_cpu_can_not_hold_is_reported():
    saved = area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)
    live = area({2: (576, 256)}, 832, AVX_XCR0, 0b111, tag=2)
    _, kept = xsave.merge(live, saved, INTEL, {2: (576, 256)}, trusted={2, 5, 6, 7, 9})
    assert {5, 6, 7, 9} <= set(kept)


# -- which components of a core to believe ---------------------------------------------------------

def core_with(xstate, producer="kernel", layout=None):
    return Core(path="/cores/x.core", machine=62, elf_class=2, segments=(),
                threads=(ThreadState(7, bytes(216), xstate=xstate),), pid=7,
                xsave_layout=layout, producer=producer)


def test_gdb_s_fixed_offsets_are_intel_s():
    assert xsave.GDB_LAYOUT == INTEL


def test_a_kernel_core_with_a_layout_note_is_read_by_that_layout():
    core = core_with(area(AMD, 2440, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1), layout=dict(AMD))
    policy = xsave_policy(core, live_layout=INTEL)       # restored on an Intel CPU
    assert policy.layout == AMD
    assert policy.trusted == {2, 5, 6, 7, 9}


def test_a_gcore_core_on_an_amd_cpu_trusts_avx_but_not_avx512_or_pkru():
    core = core_with(area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1), producer="gdb")
    policy = xsave_policy(core, live_layout=AMD)
    assert policy.layout == INTEL
    assert policy.trusted == {2}


def test_a_gcore_core_on_an_intel_cpu_trusts_everything_it_holds():
    core = core_with(area(INTEL, 2696, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1), producer="gdb")
    assert xsave_policy(core, live_layout=INTEL).trusted == {2, 5, 6, 7, 9}


def test_only_components_the_core_s_cpu_had_are_trusted():
    core = core_with(area(INTEL, 832, AVX_XCR0, AVX_XCR0, tag=1), producer="gdb")
    assert xsave_policy(core, live_layout=INTEL).trusted == {2}


def test_without_a_layout_note_or_gdb_the_live_layout_is_assumed():
    core = core_with(area(AMD, 2440, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1), producer="kernel")
    policy = xsave_policy(core, live_layout=AMD)
    assert policy.layout == AMD and policy.trusted == {2, 5, 6, 7, 9}


def test_a_component_past_the_end_of_the_core_s_area_is_not_trusted():
    short = area(AMD, 2440, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=1)[:1408]
    policy = xsave_policy(core_with(short, producer="kernel"), live_layout=AMD)
    assert policy.trusted == {2, 5, 6}


def test_a_core_without_xstate_trusts_nothing():
    assert xsave_policy(core_with(None), live_layout=AMD).trusted == frozenset()


def test_the_real_cores_xcr0_is_in_the_software_reserved_bytes(any_core):
    with CoreFile(str(any_core.path)) as cf:
        for t in cf.core.threads:
            mask = xsave.xcr0(t.xstate)
            assert mask & 0b11 == 0b11 and mask & 0b100        # x87, SSE and AVX on any x86-64 here
            assert bv_of(t.xstate) & ~mask == 0


# -- the x86-64 register table --------------------------------------------------------------------

def test_general_registers_sit_where_lief_finds_them(any_core):
    lief = {t.lwp: t.registers for t in lief_core(any_core.path).threads}
    with CoreFile(str(any_core.path)) as cf:
        for t in cf.core.threads:
            ours = X86_64.unpack_gregs(t.gregs)
            assert {name: ours[name] for name in lief[t.lwp]} == lief[t.lwp], f"thread {t.lwp}"
            assert ours[X86_64.pc] == lief[t.lwp]["rip"] and ours[X86_64.sp] == lief[t.lwp]["rsp"]


def test_packing_unpacked_registers_gives_the_same_bytes(any_core):
    with CoreFile(str(any_core.path)) as cf:
        regsets = [t.gregs for t in cf.core.threads]
    regsets += [random.Random(seed).randbytes(27 * 8) for seed in range(20)]
    for raw in regsets:
        assert X86_64.pack_gregs(X86_64.unpack_gregs(raw)) == raw


def test_negative_register_values_pack_as_two_s_complement():
    values = dict.fromkeys(X86_64.gregs, 0) | {"orig_rax": -1}
    raw = X86_64.pack_gregs(values)
    assert struct.unpack_from("<Q", raw, X86_64.gregs.index("orig_rax") * 8)[0] == (1 << 64) - 1


# -- to_gdb_layout (exports) --------------------------------------------------------------------

def test_an_amd_avx512_area_moves_to_gdbs_offsets_and_size():
    amd = {c: AMD[c] for c in (2, 5, 6, 7)}
    saved = area(amd, 2432, AVX512_XCR0, AVX512_XCR0, tag=3)
    moved, layout = xsave.to_gdb_layout(saved, amd)
    assert len(moved) == 2688 and layout == {c: INTEL[c] for c in (2, 5, 6, 7)}
    assert moved[:576] == saved[:576]                           # legacy area, XCR0 and header
    for comp in (2, 5, 6, 7):
        assert piece(moved, INTEL[comp]) == piece(saved, AMD[comp]), comp
    assert piece(moved, (960, 128)) == bytes(128)              # MPX, unused: zeros


def test_with_pkru_the_area_ends_after_it():
    saved = area(AMD, 2440, AVX512_PKRU_XCR0, AVX512_PKRU_XCR0, tag=5)
    moved, _ = xsave.to_gdb_layout(saved, AMD)
    assert len(moved) == 2696 and piece(moved, INTEL[9]) == piece(saved, AMD[9])


@pytest.mark.parametrize("layout, size, xcr0", [(INTEL, 2696, AVX512_PKRU_XCR0), ({2: AMD[2]}, 832, AVX_XCR0),
                                                ({}, 832, AVX_XCR0)])
def test_an_area_gdb_reads_as_it_is_or_without_a_layout_is_left_alone(layout, size, xcr0):
    saved = area(layout or {2: (576, 256)}, size, xcr0, xcr0, tag=7)
    assert xsave.to_gdb_layout(saved, layout) == (saved, layout)


def test_a_component_gdb_has_no_place_for_leaves_the_area_alone():
    amx = {**AMD, 17: (2496, 64)}
    saved = area(amx, 2560, AVX512_PKRU_XCR0 | 1 << 17, AVX512_PKRU_XCR0, tag=9)
    assert xsave.to_gdb_layout(saved, amx) == (saved, amx)
