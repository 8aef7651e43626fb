"""How the benchmark reads its figures: a process group's CPU time finer than a clock tick (the
1-concurrent points are a few hundred calls of a fraction of a millisecond), and a ratio to the
baseline taken round by round."""

from __future__ import annotations

import subprocess
import sys

from bench.points import paired
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


def test_a_ratio_to_the_baseline_pairs_the_runs_of_each_round() -> None:
    """The machine sped up in the second round: each round's ratio is 2, while the median of
    the target over the median of the baseline would say 2.2."""
    assert paired([1.0, 2.0, 1.1], [0.5, 1.0, 0.5]) == {"median": 2.0, "range": [2.0, 2.2]}
    assert paired([1.0], [0.0]) is None  # no baseline figure to divide by
