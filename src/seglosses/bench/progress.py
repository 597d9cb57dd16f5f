"""The study-level progress display of ``seglosses bench``: runs finished / running / failed, elapsed, ETA.

On a terminal the display is one status line kept at the bottom (a ``tqdm`` bar whose text is
:meth:`StudyProgress.status`, so log lines printed with ``tqdm.write`` pass above it); when
stderr is a file or a pipe (a batch job's log), it prints one plain line per run that ends.

The ETA is ``mean duration of the runs trained so far × runs still to train / runs at a time``,
less the time the running runs have already spent; runs skipped because they finished earlier
do not count towards the mean.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Dict, List, Optional, TextIO

__all__ = ["StudyProgress", "format_duration"]


def format_duration(seconds: Optional[float]) -> str:
    """``h:mm:ss`` or ``m:ss``; ``--`` for ``None``.

    Example:
        >>> format_duration(75.4), format_duration(3725), format_duration(None)
        ('1:15', '1:02:05', '--')
    """
    if seconds is None:
        return "--"
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StudyProgress:
    """Counts the runs of a study as they start and end, and shows the count.

    Args:
        total: runs of the study (pre-training runs included).
        slots: runs at a time (for the ETA).
        stream: where the display goes (default ``sys.stderr``).
        live: a redrawn status line (default: when ``stream`` is a terminal); otherwise one
            line per run that ends.
        enabled: ``False`` shows nothing (the counts are still kept).
        position: the ``tqdm`` line of the live display (below the bars of a run in the same
            process).
        clock: the time source (for tests).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = StudyProgress(3, stream=out, live=False, clock=iter([0, 0, 10, 10]).__next__)
        >>> p.start("a", "CE seed 0"); p.end("a", "CE seed 0", "finished")
        >>> print(out.getvalue().strip())
        [1/3] CE seed 0: finished in 0:10; 0 running, 0 failed, elapsed 0:10, ETA 0:20
    """

    def __init__(self, total: int, *, slots: int = 1, stream: Optional[TextIO] = None, live: Optional[bool] = None,
                 enabled: bool = True, position: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = int(total)
        self.slots = max(1, int(slots))
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.enabled = enabled
        if live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = live and enabled
        self.t0 = clock()
        self.running: Dict[str, float] = {}
        self.done = 0
        self.skipped = 0
        self.failed = 0
        self.durations: List[float] = []
        self._bar = None
        if self.live:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, bar_format="{desc}", file=self.stream, position=position,
                             leave=True, dynamic_ncols=True)
            self._bar.set_description_str(self.status(), refresh=True)

    # ---------------------------------------------------------------- counts
    def start(self, key: str, label: str) -> None:
        """A run started (``key``: its id)."""
        self.running[key] = self.clock()
        self.refresh()

    def end(self, key: str, label: str, status: str) -> None:
        """A run ended: ``status`` is ``"finished"``, ``"skipped"`` (finished earlier) or ``"failed"``."""
        now = self.clock()
        began = self.running.pop(key, None)
        seconds = None if began is None else now - began
        if status == "failed":
            self.failed += 1
        else:
            self.done += 1
            if status == "skipped":
                self.skipped += 1
            elif seconds is not None:
                self.durations.append(seconds)
        if self.enabled and not self.live and status != "skipped":
            took = f" in {format_duration(seconds)}" if seconds is not None else ""
            print(f"[{self.done + self.failed}/{self.total}] {label}: {status}{took}; "
                  f"{len(self.running)} running, {self.failed} failed, elapsed {format_duration(now - self.t0)}, "
                  f"ETA {format_duration(self.eta(now))}", file=self.stream, flush=True)
        self.refresh()

    def eta(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds until the last run ends (``None`` until one run has been trained)."""
        if not self.durations:
            return None
        now = self.clock() if now is None else now
        mean = sum(self.durations) / len(self.durations)
        left = self.total - self.done - self.failed
        spent = sum(min(now - t, mean) for t in self.running.values())
        return max(0.0, (left * mean - spent) / min(self.slots, max(1, left)))

    def status(self) -> str:
        """The status line: ``study: 3/16 runs done (1 skipped), 2 running, 0 failed; elapsed 1:02, ETA 4:10``."""
        now = self.clock()
        skipped = f" ({self.skipped} skipped)" if self.skipped else ""
        return (f"study: {self.done}/{self.total} runs done{skipped}, {len(self.running)} running, "
                f"{self.failed} failed; elapsed {format_duration(now - self.t0)}, ETA {format_duration(self.eta(now))}")

    # ---------------------------------------------------------------- display
    def refresh(self) -> None:
        """Redraw the live status line (no-op otherwise)."""
        if self._bar is not None:
            self._bar.set_description_str(self.status(), refresh=True)

    def close(self) -> None:
        """End the display."""
        if self._bar is not None:
            self.refresh()
            self._bar.close()
            self._bar = None
