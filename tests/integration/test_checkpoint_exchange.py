"""Checkpoints leaving and entering gdb: export to a core stock gdb reads, import of kernel and
gcore cores, diff, and the MI commands a front end would use."""

import os
import re
import subprocess

import pytest
from helpers import GDB, MARK, MARK_CMD, ROOT, clean_run, compile_c, from_line, program_output, run_gdb


@pytest.fixture
def store_env(tmp_path):
    return {**os.environ, "GDB_CHECKPOINT_DIR": str(tmp_path / "store")}


def values(text):
    return dict(re.findall(r"^\$(\d+) = (.*)$", text, re.M))


def test_an_exported_checkpoint_opens_in_stock_gdb_like_the_live_process(tmp_path, store_env):
    exe = compile_c("threads", tmp_path)
    exported = tmp_path / "phase2.core"
    live = run_gdb(exe, "break phase if k == 2", "run", "checkpoint save p2", "print progress",
                   "print k", "info threads", f"checkpoint export p2 {exported}", "kill", env=store_env)
    assert live.returncode == 0 and exported.exists(), live.stderr
    stock = subprocess.run([GDB, "-nx", "-batch", "-ex", "print progress", "-ex", "print k",
                            "-ex", "info threads", "-ex", "thread apply all bt", str(exe), str(exported)],
                           capture_output=True, text=True, timeout=60)
    got, want = values(stock.stdout), values(live.stdout)
    assert got["1"] == want["1"] and got["2"] == want["2"]          # what the live gdb printed
    assert stock.stdout.count("worker (arg=") == 3 and "phase (k=2)" in stock.stdout
    assert len(re.findall(r"^\*? +\d+ +Thread ", stock.stdout, re.M)) == 4


def test_a_kernel_core_imported_restores_into_a_new_process(tmp_path, store_env):
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    run_gdb(exe, "break report if step == 5", "run", "delete", "signal SIGQUIT", cwd=tmp_path,
            core_limit=True)
    core = tmp_path / "core"
    if not core.exists():
        pytest.skip("the kernel wrote no core file here (core_pattern: "
                    f"{open('/proc/sys/kernel/core_pattern').read().strip()!r})")
    out = run_gdb(exe, f"checkpoint import {core} crash5", "break report if step == 8",
                  "run", "checkpoint list", "checkpoint restore crash5", "delete", MARK_CMD, "continue",
                  env=store_env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^crash5 .* report ", out.stdout, re.M)      # pc of the core, in report()
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")


def test_a_gcore_core_and_a_checkpoint_of_the_same_stop_do_not_differ(tmp_path, store_env):
    exe = compile_c("counter", tmp_path)
    core = tmp_path / "s3.core"
    out = run_gdb(exe, "break report if step == 3", "run", "checkpoint save mine", f"gcore {core}",
                  f"checkpoint import {core} theirs", "checkpoint diff mine theirs",
                  "finish", "checkpoint diff mine", env=store_env)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split("Comparing checkpoint mine with theirs:")[1].split(
        "Comparing checkpoint mine with the live process:")
    assert "memory: no differences" in first and "registers: no differences" in first
    # After `finish`: rip is in main, and report()'s printf wrote on the stack.
    assert re.search(r"registers of thread 1 \(LWP \d+\): .*\brip\b", second)
    assert "[stack]" in second


def test_diff_names_the_mapping_each_changed_page_is_in(tmp_path, store_env):
    # The program's mappings are adjacent, so one store chunk spans read-only ones and its data;
    # between steps 3 and 5 it changes its globals (total, list), never a read-only page.
    exe = compile_c("counter", tmp_path)
    out = run_gdb(exe, "break report if step == 3", "run", "checkpoint save a", "delete",
                  "break report if step == 5", "continue", "checkpoint save b", "checkpoint diff a b",
                  env=store_env)
    assert out.returncode == 0, out.stderr
    diffed = out.stdout.split("Comparing checkpoint a with b:")[1]
    ours = [line for line in diffed.splitlines() if f"{exe} (" in line]
    assert ours and all("(rw-p)" in line for line in ours), diffed


def mi_records(exe, env, commands):
    """The result records (^done, ^error...) of `commands` run by `gdb --interpreter=mi` on `exe`
    with the extension loaded, in order."""
    script = "\n".join([f'-interpreter-exec console "source {ROOT / "gdbinit.py"}"', *commands,
                        "-gdb-exit", ""])
    proc = subprocess.run([GDB, "-nx", "-q", "--interpreter=mi", str(exe)], input=script,
                          capture_output=True, text=True, timeout=120, env=env)
    return [line for line in proc.stdout.splitlines() if line.startswith("^")]


def test_mi_commands_save_list_diff_restore_and_report_errors(tmp_path, store_env):
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    out_file = tmp_path / "program.out"
    records = mi_records(exe, store_env, [
        "-break-insert -c \"step == 3\" report",
        f"-exec-arguments > {out_file}",
        "-exec-run",
        "-checkpoint-save three",
        "-break-delete 1",
        "-break-insert -c \"step == 6\" report",
        "-exec-continue",
        "-checkpoint-list",
        "-checkpoint-diff three",
        "-checkpoint-restore three",
        "-checkpoint-restore nosuch",
        "-break-delete 2",
        "-exec-continue",
        "-checkpoint-delete three three",
        "-checkpoint-list"])
    assert '^done,name="three"' in "\n".join(records)
    listed = next(r for r in records if r.startswith("^done,checkpoints="))
    assert 'name="three"' in listed and 'function="report"' in listed
    diffed = next(r for r in records if r.startswith("^done,mappings="))
    assert "registers=[{thread=" in diffed
    assert any(r.startswith('^done,name="three",bytes-written=') for r in records)
    assert '^error,msg="No checkpoint named \'nosuch\' for this program (see \\"checkpoint list\\")."' in records
    # A name given twice is deleted once, and the list after it no longer has it.
    assert any(r.startswith('^done,deleted=["three"],') for r in records), records
    last_list = [r for r in records if r.startswith("^done,checkpoints=")][-1]
    assert 'name="three"' not in last_list and 'name="before-restore"' in last_list, last_list
    # The restore also moved stdout's offset (a file here) back to step 3's: the program, run on,
    # wrote steps 3.. over what it had written, and the file is exactly a clean run's output.
    assert out_file.read_text().splitlines() == clean


def test_mi_commands_back_export_and_import(tmp_path, store_env):
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    out_file, core = tmp_path / "program.out", tmp_path / "three.core"
    records = mi_records(exe, store_env, [
        "-gdb-set checkpoint-auto on",
        "-break-insert report",
        f"-exec-arguments > {out_file}",
        "-exec-run",                                # step 1: each stop is saved
        "-exec-continue", "-exec-continue",         # steps 2, 3
        "-checkpoint-save three",
        f"-checkpoint-export three {core}",
        "-exec-continue", "-exec-continue",         # steps 4, 5
        "-checkpoint-back 0",
        "-checkpoint-back 2",                       # the stop at step 3
        "-data-evaluate-expression step",
        f"-checkpoint-import {core} imported",
        "-checkpoint-list",
        "-break-delete 1",
        "-exec-continue"])
    assert any(re.match(rf'\^done,file="{re.escape(str(core))}",size="\d+",segments="\d+"', r)
               for r in records), records
    assert '^error,msg="Usage: -checkpoint-back [N]  (N a positive number)"' in records
    restored = r'\^done,name="[^"]+",bytes-written="\d+",threads="1"'
    went_back = next(i for i, r in enumerate(records) if re.match(restored, r))
    assert records[went_back + 1] == '^done,value="3"'
    assert any(r.startswith('^done,name="imported",size=') for r in records), records
    listed = next(r for r in records if r.startswith("^done,checkpoints="))
    assert 'name="imported"' in listed and 'name="three"' in listed
    # Back to step 3's stop moved stdout's offset back too: the program, run on from there,
    # rewrote steps 3.. and the file is exactly a clean run's output.
    assert out_file.read_text().splitlines() == clean
    # The exported core is step 3's process, as stock gdb reads it.
    stock = subprocess.run([GDB, "-nx", "-batch", "-ex", "print step", "-ex", "print total",
                            str(exe), str(core)], capture_output=True, text=True, timeout=60)
    assert values(stock.stdout) == {"1": "3", "2": str(1 + 4 + 9)}, stock.stdout + stock.stderr


def test_an_exported_checkpoints_vector_registers_read_in_stock_gdb_as_they_were(tmp_path, store_env):
    """gdb 13 reads a core's XSAVE area at Intel's offsets and size, whatever the CPU: on an AMD
    CPU with AVX-512 the kernel's (smaller) layout made it warn and lose the upper halves of ymm."""
    exe = compile_c("vectors", tmp_path, "-mavx")
    exported = tmp_path / "round2.core"
    regs = ["print $ymm7.v8_int32", "print $ymm15.v8_int32", "print $xmm3.v4_int32", "print $mxcsr"]
    live = run_gdb(exe, "break *vec_stop", "run", "continue", *regs, "checkpoint save r2",
                   f"checkpoint export r2 {exported}", "kill", env=store_env)
    assert live.returncode == 0 and exported.exists(), live.stderr
    stock = subprocess.run([GDB, "-nx", "-batch", *(a for r in regs for a in ("-ex", r)), str(exe), str(exported)],
                           capture_output=True, text=True, timeout=60)
    assert "too small" not in stock.stderr and "unavailable" not in stock.stdout, stock.stderr + stock.stdout
    assert list(values(stock.stdout).values()) == list(values(live.stdout).values()), stock.stdout


def test_a_core_of_another_program_is_imported_under_that_program_and_says_so(tmp_path, store_env):
    counter, vectors = compile_c("counter", tmp_path), compile_c("vectors", tmp_path, "-mavx")
    core = tmp_path / "vectors.core"
    made = run_gdb(vectors, "break *vec_stop", "run", f"gcore {core}", "kill")
    assert core.exists(), made.stderr
    out = run_gdb(counter, f"checkpoint import {core} theirs", "checkpoint list", env=store_env)
    assert out.stderr == "", out.stderr
    assert f"It belongs to {vectors} (build-id " in out.stdout and "No checkpoints." in out.stdout, out.stdout
    theirs = run_gdb(vectors, "checkpoint list", env=store_env)
    assert re.search(r"^theirs ", theirs.stdout, re.M), theirs.stdout
    mine = run_gdb(vectors, f"checkpoint import {core} again", env=store_env)
    assert "Checkpoint again saved" in mine.stdout and "belongs" not in mine.stdout
