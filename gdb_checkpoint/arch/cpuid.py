"""This CPU's XSAVE component layout from CPUID leaf 0xD, executed from a tiny code page.

The layout differs between Intel and AMD parts (FACTS), and no file under /proc tells it. x86-64 only;
callers fall back to the architectural AVX offset when this is unavailable."""

import ctypes
import mmap

# push rbx; mov r8,rdx; mov eax,edi; mov ecx,esi; cpuid; mov [r8],eax; mov [r8+4],ebx;
# mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret   -- cpuid(leaf, subleaf, out[4])
_CODE = bytes.fromhex("53 4989d0 89f8 89f1 0fa2 418900 41895804 41894808 4189500c 5b c3")
_fn = None
# Made once: ctypes keeps array types only while something holds them, and one made per call
# became cyclic garbage for the collector to destroy after every command that gathered facts.
_Out = ctypes.c_uint32 * 4


def cpuid(leaf: int, subleaf: int = 0):
    global _fn
    if _fn is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_CODE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _fn = (ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)(addr), page)
    out = _Out()
    _fn[0](leaf, subleaf, out)
    return tuple(out)


def xsave_layout(xcr0: int) -> dict:
    """component -> (offset, size) in the standard XSAVE format for the components in `xcr0`."""
    layout = {}
    for comp in range(2, 64):
        if xcr0 >> comp & 1:
            size, offset, _, _ = cpuid(0xD, comp)
            if size:
                layout[comp] = (offset, size)
    return layout
