"""A worker: one background thread that owns one copy of the model, so model work never blocks the web server and
never runs two forward passes through the same hooks at once. A job asked for while it is queued or running is
joined: the second caller gets the same future, and the work runs once.

    w = Worker("jobs")
    fut = w.submit(("preferred", "dgn-am-class", "fc8:3"), fn)   # fn(progress) -> result; progress(fraction)
    w.progress(key)                                               # 0..1 while it runs, None when not running
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable


class Worker:
    """A single-thread executor with de-duplicated jobs and per-job progress."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dgn-am-{name}")
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}
        self._progress: dict[Hashable, float] = {}
        self.started = 0  # jobs actually started (joined requests do not count); for tests and the status line

    def submit(self, key: Hashable, fn: Callable[[Callable[[float], None]], Any]) -> Future:
        """Run fn(progress) in the worker thread, or return the future of the job with the same key that is
        queued or running. progress(fraction) records how far the job is, fraction in [0, 1]."""
        with self._lock:
            if key in self._running:
                return self._running[key]
            self.started += 1
            self._progress[key] = 0.0
            fut = self._pool.submit(self._run, key, fn)
            self._running[key] = fut
            return fut

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run fn() in the worker thread, after the jobs already queued; no de-duplication (for live frames)."""
        return self._pool.submit(fn)

    def _run(self, key: Hashable, fn: Callable[[Callable[[float], None]], Any]) -> Any:
        def progress(fraction: float) -> None:
            self._progress[key] = min(1.0, max(0.0, float(fraction)))

        try:
            return fn(progress)
        finally:
            with self._lock:
                self._running.pop(key, None)
                self._progress.pop(key, None)

    def progress(self, key: Hashable) -> float | None:
        """How far the job with this key is (0..1), or None when it is neither queued nor running."""
        with self._lock:
            return self._progress.get(key) if key in self._running else None

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running one to end."""
        self._pool.shutdown(wait=True, cancel_futures=True)
