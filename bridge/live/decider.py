"""Work too slow for the worker (a phrase's harmony, a respond mode answer: tens of ms), done
beside it: `submit(token, work)`, then `take(token)` the result (or the exception `work` raised)
once it is there. The newest job is the one that matters: one superseded before it started is
skipped, and only the newest result is kept."""
from __future__ import annotations

import collections
import threading
from typing import Callable

from bridge.scheduling import long_slice


def _outcome(work: Callable[[], object]):
    try:
        return work()
    except Exception as error:  # the engine failed: the caller plays without it and says so
        return error


class Decider:
    """Does the work in the caller's thread, at `submit` (render(), the tests)."""

    def __init__(self):
        self._results: dict[int, object] = {}

    def submit(self, token: int, work: Callable[[], object]) -> None:
        self._results = {token: _outcome(work)}

    def take(self, token: int, wait: bool = False):
        """The result of job `token` (None: not there yet; `wait`: until it is)."""
        return self._results.pop(token, None)

    def close(self) -> None:
        pass


class ThreadDecider(Decider):
    """Does the work in a thread of its own, so the worker never waits for it and sends what is
    due meanwhile on time."""

    def __init__(self, name: str = "bachbridge-decider"):
        super().__init__()
        self._jobs: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, token: int, work: Callable[[], object]) -> None:
        with self._wake:
            self._jobs.append((token, work))
            self._wake.notify()

    def take(self, token: int, wait: bool = False):
        with self._wake:
            while wait and token not in self._results and not self._closed:
                self._wake.wait(0.05)
            return self._results.pop(token, None)

    def _run(self) -> None:
        long_slice()
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                token, work = self._jobs.pop()
                self._jobs.clear()  # older jobs are moot: their take() never comes
            result = _outcome(work)
            with self._wake:
                self._results = {token: result}
                self._wake.notify_all()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(5.0)
