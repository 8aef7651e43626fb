"""The benchmark's CPU reading: a process group's CPU time, finer than a clock tick, so that the
1-concurrent points (a few hundred calls of a fraction of a millisecond) are not rounded to
whole ticks."""

from __future__ import annotations

import subprocess
import sys

from bench.procfs import group_cpu_s

BURN = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < 0.004:
    pass
print(time.process_time() - start, flush=True)
sys.stdin.readline()
"""


def test_a_few_milliseconds_of_a_groups_cpu_are_counted_as_spent() -> None:
    with subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,  # noqa: S603
                          stdout=subprocess.PIPE, text=True, start_new_session=True) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # started: what follows is the burn alone
        before = group_cpu_s(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        burned = float(child.stdout.readline())
        spent = group_cpu_s(child.pid) - before
        child.stdin.write("done\n")
        child.stdin.flush()
    # a clock tick is 10 ms: a tick count would read 0 or 10 ms for these 4-5 ms
    assert burned - 0.0005 < spent < burned + 0.002, (spent, burned)
