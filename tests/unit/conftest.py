"""The unit tests' real cores: tests/programs/unit_target.c dumped once by gdb's gcore, once by the kernel.

Session-scoped, made once per run. The code under test never runs gdb; gdb and the kernel only make
fixtures, and what the program printed about itself is kept next to each core as an oracle."""

import re
import resource
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import helpers as shared  # noqa: E402  (tests/conftest.py put tests/ on sys.path)

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


@dataclass
class FixtureCore:
    """A core of unit_target and what the program (and, for gcore, gdb) said when it was dumped."""
    path: Path
    exe: Path
    producer: str                   # who wrote it: "gdb" or "kernel"
    printed: dict                   # the program's own "| NAME ..." lines, split
    gdb_regs: dict = field(default_factory=dict)    # gdb's `print` of main-thread registers
    gdb_lwps: tuple = ()            # LWPs of `info threads`

    @property
    def pid(self) -> int:
        return int(self.printed["pid"][0])

    def printed_global(self):
        """(address, value) of unit_global as the program printed them."""
        addr, value = self.printed["global"]
        return int(addr, 16), int(value)

    def printed_heap(self):
        addr, text = self.printed["heap"]
        return int(addr, 16), text

    @property
    def printed_mxcsr(self) -> int:
        return int(self.printed["mxcsr"][0], 16)


def _printed(stdout: str) -> dict:
    out = {}
    for line in shared.program_output(stdout):
        name, *values = line[2:].split()
        out[name] = values
    for needed in ("pid", "global", "heap", "mxcsr"):
        assert needed in out, f"unit_target did not print {needed!r}:\n{stdout}"
    return out


def _raise_core_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


@pytest.fixture(scope="session")
def unit_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("unit")


@pytest.fixture(scope="session")
def unit_exe(unit_dir):
    return shared.compile_c("unit_target", unit_dir)


@pytest.fixture(scope="session")
def gcore_core(unit_exe, unit_dir, have_gdb):
    """unit_target stopped at unit_checkpoint() with its two waiting threads, dumped by gcore."""
    path = unit_dir / "gcore.core"
    regs = ("rip", "rsp", "fs_base", "cs", "ss", "ds", "es", "fs", "gs")
    proc = shared.run_gdb(unit_exe, "break unit_checkpoint", "run", "info threads",
                          *(f'printf "gdb-reg {r} %#lx\\n", (long)${r}' for r in regs),
                          f"gcore {path}", load=False, timeout=60)
    assert path.exists(), f"gcore wrote no core:\n{proc.stdout}\n{proc.stderr}"
    gdb_regs = {m[0]: int(m[1], 16) for m in re.findall(r"^gdb-reg (\w+) (0x[0-9a-f]+|0)$", proc.stdout, re.M)}
    assert set(gdb_regs) == set(regs), proc.stdout
    lwps = tuple(int(x) for x in re.findall(r"^[* ] +\d+ +Thread \w+ \(LWP (\d+)\)", proc.stdout, re.M))
    assert len(lwps) == 3, proc.stdout
    return FixtureCore(path, unit_exe, "gdb", _printed(proc.program), gdb_regs, lwps)


@pytest.fixture(scope="session")
def kernel_core(unit_exe, tmp_path_factory):
    """unit_target killed by abort() right after unit_checkpoint(), dumped by the kernel."""
    pattern = CORE_PATTERN.read_text().strip() if CORE_PATTERN.exists() else "core"
    if pattern.startswith("|"):
        pytest.skip(f"core_pattern is a pipe ({pattern}): the kernel writes no core file here")
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("the hard RLIMIT_CORE is 0: the kernel will not write cores for this process")
    cwd = tmp_path_factory.mktemp("kernel-core")
    proc = subprocess.run([str(unit_exe), "abort"], cwd=cwd, capture_output=True, text=True,
                          timeout=60, preexec_fn=_raise_core_limit)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout, proc.stderr)
    printed = _printed(proc.stdout)
    found = [p for p in cwd.iterdir() if p.name == "core" or p.name == f"core.{printed['pid'][0]}"]
    if not found:
        pytest.skip(f"the kernel wrote no core in {cwd} (core_pattern is {pattern!r})")
    return FixtureCore(found[0], unit_exe, "kernel", printed)


@pytest.fixture(params=["gcore", "kernel"])
def any_core(request):
    """Each real core in turn: the reader must agree with the oracles on both producers."""
    return request.getfixturevalue(f"{request.param}_core")
