"""The bundled demo (`make demo`) must keep doing what the README says it does."""

import subprocess

from helpers import GDB, ROOT


def test_demo_brings_step_3_back_and_the_program_reprints_what_it_printed():
    exe = ROOT / "examples" / "build" / "counter"
    clean = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    demo = subprocess.run([GDB, "-nx", "-batch", "-x", "gdbinit.py", "-x", "examples/demo.gdb", str(exe)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert demo.returncode == 0, demo.stderr
    before, after = demo.stdout.split("--- rcore: back to step 3", 1)
    assert "$2 = 140" in before                       # at step 7 the total had moved on...
    assert "$4 = 14" in after and "$5 = 9" in after   # ...and rcore brought step 3's values back
    resumed = [l for l in after.split("--- continue", 1)[1].splitlines() if l.startswith(("step", "done"))]
    assert resumed == clean[2:]                        # steps 3..10 and the self-check, as clean
    assert resumed[-1] == "done: total=385, list check ok"
