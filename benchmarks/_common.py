"""Shared helpers for benchmark scripts: RSS and load sampling, phase clocks, writing tables to RESULTS.md."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with Path("/proc/self/statm").open() as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Samples RSS every few milliseconds in a thread, so a stage's peak can be read afterwards."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_bytes()))
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        """Highest sampled RSS between two perf_counter times (the closest sample if none fell inside)."""
        inside = [rss for t, rss in self.samples if start <= t <= end]
        if inside:
            return max(inside)
        return min(self.samples, key=lambda s: abs(s[0] - end))[1] if self.samples else rss_bytes()


def machine() -> str:
    """One line describing where the numbers were taken."""
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


RESULTS_INTRO = "Each section is written by a script in `benchmarks/`; a newer run of a section replaces the older one."


def record(title: str, table: str, notes: str = "", *, where: str | None = None) -> None:
    """Print a table and write it, dated and with the machine, to benchmarks/RESULTS.md.

    A section of the same title from an earlier run is replaced, so the file holds each
    benchmark's latest numbers (git keeps the history). ``where`` names the machine and
    date for figures taken elsewhere (the GPU run); by default this machine, now.
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"\n## {title}\n\n{where or f'{stamp} · {machine()}'}\n\n{table}\n" + (f"\n{notes}\n" if notes else "")
    print(block)
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{RESULTS_INTRO}\n"
    head, *sections = re.split(r"(?m)^(?=## )", text)
    kept = [s for s in sections if s.splitlines()[0] != f"## {title}"]
    RESULTS.write_text(head + "".join(kept).rstrip("\n") + "\n" + block)


class LoadSampler:
    """Samples the machine's 1-minute load average every ``interval_s`` in a thread, from construction to stop()."""

    def __init__(self, interval_s: float = 20.0) -> None:
        import threading

        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> None:
        """Stop sampling (takes one last sample)."""
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def text(self) -> str:
        """``load average (1 min) mean 7.9, min 5.1, max 11.0 over N samples`` for the notes."""
        xs = self.samples
        return f"machine load average (1 min) mean {statistics.mean(xs):.1f}, min {min(xs):.1f}, max {max(xs):.1f}"


class PhaseClock:
    """``with clock("phase"):`` adds the block's wall and process-CPU seconds to ``phases``."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.phases[f"{name}_wall_s"] = self.phases.get(f"{name}_wall_s", 0.0) + time.perf_counter() - wall
            self.phases[f"{name}_cpu_s"] = self.phases.get(f"{name}_cpu_s", 0.0) + time.process_time() - cpu
