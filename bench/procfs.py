"""What a target costs, read from Linux /proc: CPU time of a whole process group (a target and
the workers it forks) and resident memory.

Every target is started in a session of its own (`start_new_session=True`), so its process
group id is its pid and the group holds exactly the target and its children.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from field 3 (state) on; the command name (field 2) may
    hold spaces and parentheses, so the split starts after its last ')'. None once the process
    is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def group_members(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid` (field 5 of /proc/<pid>/stat)."""
    members = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_cpu_s(pgid: int) -> float:
    """CPU time of the group, in seconds: the scheduler's own count in nanoseconds (the first
    field of /proc/<pid>/task/<tid>/schedstat, summed over every thread of every member), or,
    where the kernel keeps no schedstat, utime + stime in clock ticks (usually 10 ms, too coarse
    for the 1-concurrent points: 187 calls of 0.2 ms are under 4 ticks)."""
    total_ns = 0
    for pid in group_members(pgid):
        try:
            threads = os.listdir(PROC / str(pid) / "task")
            for tid in threads:
                total_ns += int((PROC / str(pid) / "task" / tid / "schedstat").read_text()
                                .split()[0])
        except FileNotFoundError:
            continue  # a member or thread that ended meanwhile
        except (OSError, ValueError, IndexError):
            return _group_ticks_s(pgid)
    return total_ns / 1e9


def _group_ticks_s(pgid: int) -> float:
    """utime + stime (fields 14 and 15, all threads of each process) summed over the group, in
    seconds. Resolution: one clock tick, so measure many calls at a time."""
    ticks = 0
    for pid in group_members(pgid):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS_PER_S


def rss_kib(pid: int) -> dict[str, int]:
    """Current and peak resident memory of a process; for a `serve --workers` parent, the sum
    over its workers (the parent itself only waits)."""
    children = (PROC / str(pid) / "task" / str(pid) / "children").read_text().split()
    if children:
        each = [rss_kib(int(child)) for child in children]
        return {key: sum(one[key] for one in each) for key in ("rss_kib", "peak_rss_kib")}
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "peak_rss_kib": fields.get("VmHWM", 0)}


MACHINE_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
"""The machine's CPU time by kind, the first fields of /proc/stat's `cpu` line."""


def machine_ticks() -> dict[str, int]:
    """The whole machine's CPU time by kind since boot, in clock ticks, all CPUs summed."""
    first = (PROC / "stat").read_text().split("\n", 1)[0].split()
    return {kind: int(value) for kind, value in zip(MACHINE_TIMES, first[1:], strict=False)}


def machine_state(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """How the machine's CPU time went between two readings, in per cent: `steal` is what the
    host gave to other machines while ours had work (on a shared virtual machine the reason
    the same code measures slower on some days), `idle` what nobody used."""
    spent = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in MACHINE_TIMES}
    total = sum(spent.values()) or 1
    return {"steal_pct": round(100 * spent["steal"] / total, 1),
            "idle_pct": round(100 * (spent["idle"] + spent["iowait"]) / total, 1)}
