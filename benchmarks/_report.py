"""bench.py's report: Markdown tables, the target checks of docs/performance.md, and a plot."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _systems import LABELS, SYSTEMS

__all__ = ["Measurement", "check_lines", "render", "write_plot"]

MB = 1 << 20
TITLES = {
    "W1": "W1: array in, scalar out (median ms per task)",
    "W2": "W2: array in, same-size array out (median ms per task)",
    "W3": "W3: map over 16 chunks of one array, scalar per chunk (median ms per map call)",
    "W4": "W4: in-place partitioned writes, 16 disjoint chunks (median ms per map call)",
    "W5": "W5: 3,000 tiny tasks through map, chunksize 1 (median ms per map call)",
    "W1-turns": "W1 by reference against the ideal, calls in turn, memory not sampled (median ms per task)",
}


@dataclass(frozen=True)
class Measurement:
    """One workload on one system at one size: times in seconds, memory in bytes."""

    workload: str
    system: str
    nbytes: int | None
    calls: int
    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile
    first: float  # the warm-up call
    pss_rise: int  # memory: see _memory.MemoryPeak
    rise: int
    peak_pss: int
    shm_rise: int


class Results:
    """Measurements indexed by (workload, system, size in MB)."""

    def __init__(self, measurements: Iterable[Measurement]) -> None:
        self.all = list(measurements)
        self._index = {(m.workload, m.system, _mb(m.nbytes)): m for m in self.all}

    def get(self, workload: str, system: str, size_mb: int | None = None) -> Measurement | None:
        return self._index.get((workload, system, size_mb))

    def systems(self, workload: str) -> list[str]:
        present = {m.system for m in self.all if m.workload == workload}
        return [s for s in SYSTEMS if s in present]

    def sizes(self, workload: str) -> list[int]:
        return sorted({mb for w, _, mb in self._index if w == workload and mb is not None})


def _mb(nbytes: int | None) -> int | None:
    return None if nbytes is None else nbytes // MB


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mib(nbytes: int) -> str:
    return f"{nbytes / MB:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _speed_table(results: Results, workload: str) -> list[str]:
    systems = results.systems(workload)
    sizes: list[int | None] = [None] if workload == "W5" else list(results.sizes(workload))
    rows = []
    for size in sizes:
        ppe = results.get(workload, "ppe", size)
        row = ["-" if size is None else f"{size} MB"]
        for system in systems:
            m = results.get(workload, system, size)
            if m is None:
                row.append("")
            elif system == "ppe" or ppe is None:
                row.append(_ms(m.median))
            else:
                row.append(f"{_ms(m.median)} ({ppe.median / m.median:.1f}x)")
        rows.append(row)
    return _table(["size", *(LABELS[s] for s in systems)], rows)


COPIED, SHARED, IDEAL = LABELS["sae-copied"], LABELS["sae-shared"], LABELS["ideal-prefilled"]


def _verdict(text: str, ratio: float, target: str, ok: bool, fmt: str = ".2f") -> str:
    return f"{text}: {ratio:{fmt}}x (target {target}): {'PASS' if ok else 'FAIL'}"


def _skip(text: str, missing: str) -> str:
    return f"{text}: SKIP ({missing} not measured)"


def _speedup(results: Results, workload: str) -> str:
    text = f"{workload}@128MB {COPIED} vs PPE"
    m, ppe = results.get(workload, "sae-copied", 128), results.get(workload, "ppe", 128)
    if not (m and ppe):
        return _skip(text, f"{workload} at 128 MB for both systems")
    ratio = ppe.median / m.median
    return _verdict(text, ratio, ">= 8x", ratio >= 8, ".1f")


def _by_reference(results: Results, system: str, size: int) -> Measurement | None:
    """W1 timed in turns with the other by-reference system if it was, else as measured."""
    return results.get("W1-turns", system, size) or results.get("W1", system, size)


def _size_independence(results: Results) -> str:
    text = f"W1 {SHARED} 256MB vs 1MB"
    small, large = _by_reference(results, "sae-shared", 1), _by_reference(results, "sae-shared", 256)
    if not (small and large):
        return _skip(text, "W1 at 1 MB and 256 MB")
    ratio = large.median / small.median
    return _verdict(f"{text} ({_ms(large.median)} ms vs {_ms(small.median)} ms)", ratio, "<= 2x", ratio <= 2)


def _versus_ideal(results: Results, size: int) -> str:
    text = f"W1@{size}MB {SHARED} vs {IDEAL}"
    m, floor = _by_reference(results, "sae-shared", size), _by_reference(results, "ideal-prefilled", size)
    if not (m and floor):
        return _skip(text, f"W1 at {size} MB for both systems")
    ratio = m.median / floor.median
    return _verdict(f"{text} ({_ms(m.median)} ms vs {_ms(floor.median)} ms)", ratio, "<= 1.5x", ratio <= 1.5)


def _copy_floor(results: Results) -> str:
    text = f"W1@128MB {COPIED} vs one copy into a fresh segment + {IDEAL} task"
    m, copy = results.get("W1", "sae-copied", 128), results.get("copy", "fresh-segment", 128)
    task = results.get("W1", "ideal-prefilled", 128)
    if not (m and copy and task):
        return _skip(text, "W1 and the fresh-segment copy at 128 MB")
    ratio = m.median / (copy.median + task.median)
    detail = f"{text} ({_ms(m.median)} ms vs {_ms(copy.median)} + {_ms(task.median)} ms)"
    return _verdict(detail, ratio, "<= 1.5x", ratio <= 1.5)


def _tiny_tasks(results: Results) -> str:
    text = f"W5 {COPIED} vs PPE, time ratio"
    m, ppe = results.get("W5", "sae-copied"), results.get("W5", "ppe")
    if not (m and ppe):
        return _skip(text, "W5 for both systems")
    ratio = m.median / ppe.median
    return _verdict(f"{text} ({_ms(m.median)} ms vs {_ms(ppe.median)} ms)", ratio, "<= 1.15x", ratio <= 1.15)


def _peak_memory(results: Results) -> str:
    text = f"peak memory W2@512MB {COPIED} vs PPE"
    m, ppe = results.get("W2", "sae-copied", 512), results.get("W2", "ppe", 512)
    if not (m and ppe and ppe.pss_rise):
        return _skip(text, "W2 at 512 MB for both systems")
    # Ours: the larger of the two rises (PSS misses segments nobody maps). ProcessPoolExecutor
    # uses no shared memory: its PSS rise, which machine-wide /dev/shm noise cannot inflate.
    ours, theirs = max(m.pss_rise, m.rise), ppe.pss_rise
    ratio = ours / theirs
    detail = (
        f"{text} ({_mib(ours)} MiB vs {_mib(theirs)} MiB; PSS rise {_mib(m.pss_rise)} vs "
        f"{_mib(ppe.pss_rise)}, with /dev/shm {_mib(m.rise)} vs {_mib(ppe.rise)})"
    )
    return _verdict(detail, ratio, "<= 0.5x", ratio <= 0.5)


def check_lines(results: Results) -> list[str]:
    """The performance targets (docs/performance.md), each PASS, FAIL or SKIP with its numbers."""
    return [
        _speedup(results, "W1"),
        _speedup(results, "W2"),
        _size_independence(results),
        _versus_ideal(results, 1),
        _versus_ideal(results, 256),
        _copy_floor(results),
        _tiny_tasks(results),
        _peak_memory(results),
    ]


def _memory_table(results: Results) -> list[str]:
    big = [
        m
        for m in results.all
        if m.nbytes is not None and m.nbytes >= 128 * MB and m.workload not in ("copy", "W1-turns")
    ]
    keys = sorted({(m.workload, _mb(m.nbytes)) for m in big}, key=lambda k: (k[0], k[1] or 0))
    systems = [s for s in SYSTEMS if any(m.system == s for m in big)]
    rows = []
    for workload, size in keys:
        row = [f"{workload}@{size}MB"]
        for system in systems:
            m = results.get(workload, system, size)
            row.append("" if m is None else f"{_mib(m.pss_rise)} / {_mib(m.rise)} / {_mib(m.peak_pss)}")
        rows.append(row)
    return _table(["workload", *(LABELS[s] for s in systems)], rows)


def _detail_table(results: Results) -> list[str]:
    rows = []
    for m in results.all:
        rows.append(
            [
                m.workload,
                "-" if m.nbytes is None else f"{m.nbytes // MB}",
                LABELS.get(m.system, m.system),
                str(m.calls),
                _ms(m.median),
                f"{_ms(m.low)}-{_ms(m.high)}",
                _ms(m.first),
                _mib(m.pss_rise),
                _mib(m.rise),
                _mib(m.peak_pss),
                _mib(m.shm_rise),
            ]
        )
    header = ["workload", "MB", "system", "n", "median ms", "IQR ms", "first ms"]
    return _table([*header, "PSS rise MiB", "+shm rise MiB", "peak PSS MiB", "shm rise MiB"], rows)


def render(measurements: Iterable[Measurement], meta: dict[str, Any]) -> str:
    """Return the whole report as Markdown."""
    results = Results(measurements)
    load_before, load_after = meta["load_before"], meta["load_after"]
    busy = load_before and load_before[0] > 0.5
    lines = [
        f"# zerocopy_executor benchmark, {meta['started']}",
        "",
        (
            f"{'**Busy machine.** ' if busy else ''}{meta['cpus']} cores; load average "
            f"{load_before[:1]} before, {load_after[:1]} after ({meta['duration']:.0f} s run)."
            + (" Other work ran concurrently: read differences under ~20% as noise." if busy else "")
        ),
        (
            f"Python {meta['python']}, NumPy {meta['numpy']}, zerocopy_executor {meta['zerocopy_executor']} "
            f"({meta['commit']}); start method `{meta['start_method']}` (joblib and loky use their own); "
            f"2 workers; min_nbytes {meta['min_nbytes']}; float64 arrays, 1 MB = 2**20 bytes."
        ),
        (
            "Each cell: median of n timed calls after one warm-up call (n in the last table; "
            f"policy {meta['policy']}), and in brackets the speed-up over ProcessPoolExecutor "
            "in the same run."
        ),
    ]
    for system, reason in meta["skipped"].items():
        lines.append(f"Skipped {system}: {reason}.")
    for workload in ("W1", "W2", "W3", "W4", "W5", "W1-turns"):
        if results.systems(workload):
            lines += ["", f"## {TITLES[workload]}", "", *_speed_table(results, workload)]
    copies = [m for m in results.all if m.workload == "copy"]
    if copies:
        lines += ["", "One copy of the array into a fresh segment (create, fill, unlink), median ms: "]
        lines[-1] += ", ".join(f"{_mb(m.nbytes)} MB {_ms(m.median)}" for m in copies) + "."
    lines += [
        "",
        "## Target checks (docs/performance.md, Performance targets)",
        "",
        "```",
        *check_lines(results),
        "```",
    ]
    if any(m.nbytes and m.nbytes >= 128 * MB for m in results.all):
        lines += [
            "",
            "## Peak memory, MiB: PSS rise / anon+file+/dev/shm rise / peak PSS",
            "",
            "Sampled every few tens of ms over the parent and all its descendants (workers, "
            "forkserver, helper servers). Each workload runs on a fresh start of its system; rises "
            "are above the level once its workers are up and it holds the input (the parent's "
            "array, and the shared copy made once for the shared and prefilled systems). The "
            "target takes the larger of the two rises for ours, the PSS rise for "
            "ProcessPoolExecutor (it uses no shared memory). PSS rise splits shared pages "
            "between their mappers and misses segments nobody maps; the second rise counts "
            "every /dev/shm page but /dev/shm is machine-wide, so other programs move it. "
            "Peak PSS is absolute.",
            "",
            *_memory_table(results),
        ]
    lines += ["", "## All measurements", "", *_detail_table(results), ""]
    return "\n".join(lines)


def write_plot(measurements: Iterable[Measurement], path: Path) -> bool:
    """Plot median time against size per system (log-log), one panel per workload."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results = Results(measurements)
    workloads = [w for w in ("W1", "W2", "W3", "W4") if len(results.sizes(w)) > 1]
    if not workloads:
        return False
    columns = min(2, len(workloads))
    rows = (len(workloads) + 1) // 2
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows + 1), squeeze=False)
    for ax, workload in zip(axes.flat, workloads, strict=False):
        for system in results.systems(workload):
            points = [(mb, results.get(workload, system, mb)) for mb in results.sizes(workload)]
            xs = [mb for mb, m in points if m is not None]
            ys = [m.median * 1e3 for _, m in points if m is not None]
            ax.plot(xs, ys, marker="o", label=LABELS[system])
        ax.set(xscale="log", yscale="log", xlabel="array size (MB)", ylabel="median ms per call")
        ax.set_title(TITLES[workload].split(" (")[0], fontsize="medium")
        ax.grid(visible=True, which="both", alpha=0.3)
    for ax in axes.flat[len(workloads) :]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=4, fontsize="small")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
