"""The checkpoint commands as a gdb user meets them: bad names and unknown checkpoints refused in
one line, no process, an empty store, the store's file modes, help, show and tab completion.

"Refused in one line" is judged by gdb's stderr (one line per refused command, no traceback) and by
the program, which must afterwards run on like a clean run from where it stood."""

import os
import re
import stat

import pytest
from helpers import MARK, MARK_CMD, clean_run, compile_c, compiled, from_line, gdb_on, program_output, run_gdb


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    return compiled(tmp_path_factory, "counter")



def refused(out, *expected):
    """stderr is one line per refused command, each containing its expected words."""
    lines = out.stderr.splitlines()
    assert len(lines) == len(expected), out.stderr
    for line, words in zip(lines, expected):
        for w in words:
            assert w in line, (w, line)
    assert "Traceback" not in out.stdout + out.stderr


BAD_NAMES = ["-x", "a" * 65, "a/b", ".hidden", "tab\tname", "dollar$", "it's", '"q4', "q\\3"]


def test_bad_names_are_refused_and_nothing_is_saved(counter, tmp_path):
    exe, clean = counter
    saves = [f"checkpoint save '{n}'" if "\t" in n else f"checkpoint save {n}" for n in BAD_NAMES]
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", *saves,
                 "checkpoint list", "print 6*7", "delete", MARK_CMD, "continue")
    refused(out, *[("name",)] * len(BAD_NAMES))
    assert "No checkpoints." in out.stdout
    assert "$1 = 42" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3")


def test_a_name_in_quotes_is_the_name(counter, tmp_path):
    exe, _ = counter
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", "checkpoint save 'three'",
                 'checkpoint "four"', "checkpoint list")
    assert out.stderr == "", out.stderr
    assert re.findall(r"^(three|four) ", out.stdout, re.M) == ["three", "four"], out.stdout


def test_a_64_character_name_is_fine(counter, tmp_path):
    exe, _ = counter
    name = "A1._-" + "z" * 59
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run",
                 f"checkpoint save {name}", "checkpoint list", f"checkpoint restore {name}")
    assert out.stderr == "", out.stderr
    assert re.search(rf"^{re.escape(name)} ", out.stdout, re.M), out.stdout


def test_an_empty_name_is_refused(counter, tmp_path):
    exe, _ = counter
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run",
                 'checkpoint save ""', "checkpoint list")
    refused(out, ("name",))
    assert "No checkpoints." in out.stdout


def test_unknown_names_are_refused_for_restore_and_delete(counter, tmp_path):
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 3", "run", "checkpoint save keep",
                 "delete", "break report if step == 6", "continue",
                 "checkpoint restore nope", "checkpoint delete nope", "checkpoint delete keep nope",
                 "checkpoint list", "print step", "delete", MARK_CMD, "continue")
    refused(out, ("nope",), ("nope",), ("nope",))
    assert re.search(r"^keep ", out.stdout, re.M), out.stdout      # delete is all or nothing
    assert "$1 = 6" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  6")


def test_without_a_process(counter, tmp_path):
    exe, _ = counter
    store = tmp_path / "store"
    out = gdb_on(exe, store, "checkpoint save early", "checkpoint", "checkpoint restore x",
                 "checkpoint back", "checkpoint list", "info checkpoints")
    refused(out, *[("The program is not being run.",)] * 4)
    assert out.stdout.splitlines() == ["No checkpoints.", "No checkpoints."], out.stdout
    # After a run, the list (and delete) work again without a process: they only need the program.
    gdb_on(exe, store, "break report if step == 2", "run", "checkpoint save two", "kill")
    out = gdb_on(exe, store, "checkpoint list", "checkpoint delete two two", "info checkpoints")
    assert out.stderr == "", out.stderr                        # a name given twice counts once
    assert re.search(r"^two ", out.stdout, re.M) and out.stdout.rstrip().endswith("No checkpoints.")
    assert re.search(r"^Deleted 1 checkpoint;", out.stdout, re.M), out.stdout


def test_the_store_is_private(counter, tmp_path):
    exe, _ = counter
    store = tmp_path / "deep" / "store"
    out = gdb_on(exe, store, "break report if step <= 3", "run", "checkpoint save one", "continue",
                 "checkpoint save two", "checkpoint delete one")
    assert out.stderr == "", out.stderr
    seen = 0
    for folder, dirs, files in os.walk(store):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for f in files:
            path = os.path.join(folder, f)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            seen += 1
    assert seen >= 2 and list(store.glob("packs/*.pack")), list(store.rglob("*"))


def test_help_show_and_set(counter, tmp_path):
    exe, _ = counter
    store, other = tmp_path / "store", tmp_path / "elsewhere"
    out = gdb_on(exe, store, "help checkpoint", "show checkpoint-dir",
                 f"set checkpoint-dir {other}",
                 "show checkpoint-dir", "show checkpoint-undo", "show checkpoint-auto",
                 "show checkpoint-auto-limit", "help set checkpoint-auto-limit",
                 "break report if step == 2", "run", "checkpoint save two")
    assert out.stderr == "", out.stderr
    for sub in ("save", "restore", "list", "delete", "back"):
        assert re.search(rf"^checkpoint {sub} -- ", out.stdout, re.M), out.stdout
    shown = [line for line in out.stdout.splitlines() if str(tmp_path) in line]
    assert str(store) in shown[0] and str(other) in shown[1], shown
    assert re.search(r"\bon\b", out.stdout) and re.search(r"\boff\b", out.stdout)
    assert re.search(r"\b100\b", out.stdout)
    assert list(other.glob("packs/*.pack")) and not store.exists()


def test_help_of_each_setting_says_its_first_line_once(counter, tmp_path):
    exe, _ = counter
    names = ["checkpoint-dir", "checkpoint-undo", "checkpoint-auto", "checkpoint-auto-limit", "debug checkpoint"]
    out = gdb_on(exe, tmp_path / "store", *(f"help {verb} {n}" for n in names for verb in ("set", "show")))
    assert out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    firsts = [line for line in lines if re.match(r"^(Set|Show) ", line)]
    assert len(firsts) == 2 * len(names) and len(set(firsts)) == len(firsts), out.stdout
    assert sum(line.startswith("Set ") for line in lines) == len(names)     # show's help: no Set line


def test_checkpoint_alone_saves_under_the_next_number(counter, tmp_path):
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store", "break report if step <= 3", "run", "checkpoint",
                 "continue", "checkpoint", "continue", "checkpoint list", "checkpoint restore 1",
                 "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert re.findall(r"^(\d+) ", out.stdout, re.M) == ["1", "2"], out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  1")


def test_tab_completion_offers_the_names(counter, tmp_path):
    exe, _ = counter
    out = gdb_on(exe, tmp_path / "store", "break report if step == 2", "run",
                 "checkpoint save alpha", "checkpoint save alpine", "checkpoint save beta",
                 "complete checkpoint restore ", "echo --\\n", "complete checkpoint restore al",
                 "echo --\\n", "complete checkpoint delete b")
    assert out.stderr == "", out.stderr
    everything, al, b = [re.findall(r"^checkpoint \w+ (\S+)$", part, re.M)
                         for part in out.stdout.split("--\n")]
    assert set(everything) >= {"alpha", "alpine", "beta"}
    assert sorted(al) == ["alpha", "alpine"] and b == ["beta"]


def test_export_completes_the_name_then_the_file(counter, tmp_path):
    exe, _ = counter
    (tmp_path / "cores" / "old").mkdir(parents=True)
    (tmp_path / "cores" / "one.core").write_bytes(b"")
    (tmp_path / "cores" / "other").write_bytes(b"")
    out = gdb_on(exe, tmp_path / "store", "break report if step == 2", "run", "checkpoint save alpha",
                 "complete checkpoint export al", "echo --\\n", f"complete checkpoint export alpha {tmp_path}/cores/o",
                 "echo --\\n", f"complete checkpoint export alpha {tmp_path}/co")
    assert out.stderr == "", out.stderr
    names, files, folder = [part.splitlines() for part in out.stdout.split("--\n")[-3:]]
    assert names[-1] == "checkpoint export alpha"
    assert files == [f"checkpoint export alpha {tmp_path}/cores/{n}" for n in ("old/", "one.core", "other")]
    assert folder == [f"checkpoint export alpha {tmp_path}/cores/"]


def test_delete_completes_names_without_a_process(counter, tmp_path):
    exe, _ = counter
    store = tmp_path / "store"
    gdb_on(exe, store, "break report if step == 2", "run", "checkpoint save gamma", "kill")
    out = gdb_on(exe, store, "checkpoint list", "complete checkpoint delete g")
    assert re.search(r"^gamma ", out.stdout, re.M), out.stdout
    assert "checkpoint delete gamma" in out.stdout.splitlines()


def test_another_programs_checkpoints_are_not_offered(counter, tmp_path):
    """The store files checkpoints by program: ckpt_walk sees none of counter's, can't take one."""
    exe, _ = counter
    store = tmp_path / "store"
    gdb_on(exe, store, "break report if step == 2", "run", "checkpoint save mine", "kill")
    walk = compile_c("ckpt_walk", tmp_path)
    clean = clean_run(walk)
    out = gdb_on(walk, store, "break tick if i == 4", "run", "checkpoint list",
                 "checkpoint restore mine", "print i", "delete", MARK_CMD, "continue")
    refused(out, ("mine",))
    assert "No checkpoints." in out.stdout and "$1 = 4" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "|  4:")


def test_the_store_answers_while_threads_run(tmp_path):
    """In non-stop mode one thread stops and the others run on: list, delete and import only read
    and change the store, so they work; a save needs every thread stopped and says so in one line."""
    exe = compile_c("threads", tmp_path)
    core = tmp_path / "phase2.core"
    made = run_gdb(exe, "break phase if k == 2", "run", f"gcore {core}", "kill")
    assert core.exists(), made.stderr
    out = gdb_on(exe, tmp_path / "store", "set non-stop on", "break phase if k == 2", "run",
                 "checkpoint list", "checkpoint delete nosuch", f"checkpoint import {core} theirs",
                 "checkpoint save two")
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert "No checkpoints." in out.stdout, out.stdout + out.stderr
    assert "Checkpoint theirs saved" in out.stdout and "belongs" not in out.stdout, out.stdout
    assert len(errors) == 2 and "nosuch" in errors[0] and "interrupt it first" in errors[1], out.stderr


def test_restores_show_the_frame_they_land_in_as_gdb_does(counter, tmp_path):
    exe, _ = counter
    core = tmp_path / "s3.core"
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", "checkpoint save three",
                 f"gcore {core}", "set checkpoint-auto on", "delete", "break report", "continue", "continue",
                 "checkpoint restore three", "continue", f"rcore {core}", "continue", "checkpoint back 1")
    assert out.stderr == "" or "warning:" in out.stderr, out.stderr
    landed = re.findall(r"^(?:Restored .*)\n#0  report \(step=(\d+),", out.stdout, re.M)
    assert landed == ["3", "3", "4"], out.stdout        # back 1: the stop at step 4 before the rcore


def test_a_relative_checkpoint_dir_is_made_absolute_when_set(counter, tmp_path):
    exe, _ = counter
    out = gdb_on(exe, tmp_path / "store", "set checkpoint-dir relstore", "show checkpoint-dir", "cd /",
                 "break report if step == 2", "run", "checkpoint save two", cwd=tmp_path)
    assert out.stderr == "", out.stderr
    assert f'Checkpoints are stored in "{tmp_path / "relstore"}".' in out.stdout, out.stdout
    assert list((tmp_path / "relstore").glob("packs/*.pack"))
