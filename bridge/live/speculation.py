"""Speculation: the answers note mode would give to the likeliest next melody notes, worked out
between notes so that a foreseen onset is answered by a lookup.

The work runs in a process of its own, at the lowest priority among ordinary tasks (nice 19),
with a long CPU slice (bridge.scheduling). In a thread it would share the GIL with the
worker, and a thread of low priority that holds the GIL while the CPUs are busy holds up the
worker for as long. Its bursts of CPU right after an answer went out must not delay the port
clients, which, on a JACK server running asynchronously without realtime scheduling, then drop
the very events they were to deliver: with the long slice a port client woken during a burst
runs at once, and nice 19 leaves the CPU to any other work that wants it. It changes how soon
an answer comes, never whether or which.

Worker side (`Speculator`, never blocks): after each onset `speculate()` writes the context (a
few hundred bytes, skipped when the pipe has no room) and `lookup()` reads what has come back.
Process side (`_serve`): for each rhythm guess (gap to the next onset), asks the engine for the
likeliest next pitches, fills in the windows the next onset would show for each of them (the
FIRST_PITCHES likeliest of every guess first, then the rest), and sends each answer back as soon
as it has it; a newer job makes the rest moot. Each job waits a few JACK cycles first
(SPECULATION_HOLD_OFF_S), for the answer just written to go out. An answer
is taken only for a window exactly equal to the one it was worked out for, under the same
snapshot of the knobs: a hit is a draw from the very distribution a fresh call would draw from.
"""
from __future__ import annotations

import multiprocessing
import pickle
import select
import time

import numpy as np

from bridge.live.config import Snapshot
from bridge.live.context import Context, ask_engine_many, likely_next_pitches, warm_up, window_key
from bridge.live.stats import LiveStats, describe
from bridge.onnxmodel import OnnxModel
from bridge.scheduling import long_slice, lowest_priority

# candidate windows filled in per engine call: small batches, so that a newer onset stops the work soon
SPECULATION_BATCH = 2
# the likeliest this many pitches of every rhythm guess are worked out before the rest of any
# (the rest of them is more than a fast tempo leaves time for)
FIRST_PITCHES = 8
# a job waits this long before its work starts (a newer one replaces it meanwhile): the answer the
# worker has just written goes out in the next JACK cycles, and on a server without realtime
# scheduling a burst of CPU then made those cycles late (the server's xrun) and lost it
SPECULATION_HOLD_OFF_S = 0.006
# a message to the process is written in one write() of at most PIPE_BUF bytes (with its 4-byte
# header), which a pipe with room for it (select says writable) takes whole, without blocking
_MAX_MESSAGE_BYTES = select.PIPE_BUF - 4 if hasattr(select, "PIPE_BUF") else 508


class Speculator:
    """The worker's side. `start()` launches the process (it loads the engine itself, from the
    same model file, when first asked); `close()` ends it."""

    def __init__(self, stats: LiveStats):
        self.stats = stats
        self._process = None
        self._jobs = None           # our end of the pipe to the process
        self._answers_in = None     # our end of the pipe from it
        self._generation = 0        # bumped by every job and every cancel: older answers are moot
        self._last_job = 0          # the generation of the latest job posted
        self.jobs_posted = 0
        self._told: Snapshot | None = None   # the snapshot the process was last told of ...
        self._told_id = 0                    # ... and its number
        self._answers: dict = {}    # window key -> harmony, for the job (generation, snapshot id) below
        self._answers_for = (-1, -1)
        self._done_generation = 0   # the latest job the process finished (or gave up)
        self.failed: str | None = None   # why speculation stopped, once it did

    def start(self) -> None:
        """Launch the process (a few ms here; it imports and loads at nice 19). A failure
        is kept in `failed` and reported: without speculation every onset is answered anyway."""
        if self._process is not None or self.failed:
            return
        try:
            self._launch()
        except Exception as error:
            self._fail(f"cannot start the speculator: {describe(error)}")

    def _launch(self) -> None:
        context = multiprocessing.get_context("spawn")
        jobs_out, self._jobs = context.Pipe(duplex=False)
        self._answers_in, answers_out = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(jobs_out, answers_out),
                                        name="bachbridge-speculator", daemon=True)
        self._process.start()
        # at once, before its imports: the threads it starts (onnxruntime's) inherit both
        lowest_priority(self._process.pid)
        long_slice(self._process.pid)
        jobs_out.close()
        answers_out.close()

    @property
    def pid(self) -> int | None:
        """The process's id, once it runs."""
        return None if self._process is None else self._process.pid

    def speculate(self, snapshot: Snapshot, context, gaps: list[int]) -> None:
        """Start on the answers for the onset after the one `context` ends with."""
        self.start()
        if self._process is None or self.failed:
            return
        self._generation += 1
        if snapshot is not self._told:
            engine = snapshot.engine
            told = ("snapshot", self._told_id + 1, type(engine), str(engine.model.path), snapshot.settings,
                    snapshot.config)
            if not self._post(told):
                return
            self._told, self._told_id = snapshot, self._told_id + 1
        state = (context.past, context.rows, context.filled, context.step, context.released_at)
        if self._post(("job", self._generation, self._told_id, state, list(gaps))):
            self._last_job = self._generation
            self.jobs_posted += 1

    def cancel(self) -> None:
        """What was worked out so far is moot (a new take, a release)."""
        self._generation += 1
        self._answers = {}
        self._post(("cancel", self._generation))

    def lookup(self, snapshot: Snapshot, roll: np.ndarray) -> tuple[int, int, int] | None:
        """The answer (alto, tenor, bass) worked out for exactly this window under `snapshot`,
        if there is one."""
        self.collect()
        if snapshot is not self._told or self._answers_for != (self._generation, self._told_id):
            return None
        return self._answers.get(window_key(roll))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the latest job is worked out (or given up); True if so. For tests: it blocks."""
        deadline = time.monotonic() + timeout
        while True:
            self.collect()
            if self._done_generation >= self._last_job or self.failed:
                return self._done_generation >= self._last_job
            left = deadline - time.monotonic()
            if left <= 0 or self._answers_in is None:
                return False
            self._answers_in.poll(min(left, 0.05))

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        self._post(None)
        process.join(0.2)  # it has nothing to save: not waiting longer for a process at nice 19
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        for end in (self._jobs, self._answers_in):
            end.close()

    # ---- the pipes

    def _post(self, message) -> bool:
        """Write one message if the pipe has room for it now; never wait."""
        if self._jobs is None:
            return False
        data = pickle.dumps(message)
        if len(data) > _MAX_MESSAGE_BYTES:
            self._fail(f"a message to the speculator is too long for one write ({len(data)} bytes)")
            return False
        try:
            if not select.select([], [self._jobs], [], 0)[1]:
                self.stats.speculation_errors += 1
                self.stats.last_speculation_error = "the speculator is behind: a job skipped"
                return False
            self._jobs.send_bytes(data)
        except (OSError, ValueError) as error:
            self._fail(f"the speculator's pipe broke ({describe(error)})")
            return False
        return True

    def collect(self) -> None:
        """Take in what the process sent back (never waits: each message was written whole).
        Called between notes too, so that a lookup finds little left to read."""
        pipe = self._answers_in
        if pipe is None:
            return
        try:
            while select.select([pipe], [], [], 0)[0]:  # one syscall (Connection.poll builds a selector)
                kind, *rest = pipe.recv()
                if kind == "answer":
                    generation, told_id, key, harmony = rest
                    if (generation, told_id) != self._answers_for:
                        self._answers, self._answers_for = {}, (generation, told_id)
                    self._answers[key] = harmony
                elif kind == "done":
                    self._done_generation = max(self._done_generation, rest[0])
                elif kind == "error":
                    self.stats.speculation_errors += 1
                    self.stats.last_speculation_error = rest[0]
        except (EOFError, OSError) as error:
            self._fail(f"the speculator process ended ({describe(error)})")

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            self.stats.speculation_errors += 1
            self.stats.last_speculation_error = why


# ---------------------------------------------------------------- the process

def _serve(jobs, answers) -> None:
    """The speculator process: jobs in, answers out, until None or the worker's end closes."""
    engines: dict = {}      # (engine class, model path) -> engine: the one the worker plays
    snapshots: dict = {}    # snapshot number -> Snapshot
    pending = None
    while True:
        try:
            message = pending if pending is not None else jobs.recv()
        except (EOFError, OSError):
            return
        except Exception as error:  # a message that cannot be unpickled here: say so, go on
            answers.send(("error", f"a job this process cannot read ({describe(error)})"))
            continue
        pending = None
        if message is None:
            return
        kind = message[0]
        if kind == "snapshot":
            _, told_id, engine_class, path, settings, config = message
            try:
                if (engine_class, path) not in engines:
                    engines.clear()
                    engine = engine_class(OnnxModel(path, threads=1, spin=False))
                    warm_up(Snapshot(config, settings, engine))
                    engines[(engine_class, path)] = engine
                snapshots = {told_id: Snapshot(config, settings, engines[(engine_class, path)])}
            except Exception as error:
                answers.send(("error", f"loading the engine: {describe(error)}"))
        elif kind == "job":
            _, generation, told_id, state, gaps = message
            snapshot = snapshots.get(told_id)
            if snapshot is not None and not jobs.poll(SPECULATION_HOLD_OFF_S):
                try:
                    pending = _work(jobs, answers, snapshot, generation, told_id, state, gaps)
                except Exception as error:  # only a lost head start: the worker answers the onset itself
                    answers.send(("error", describe(error)))
            answers.send(("done", generation))


def _work(jobs, answers, snapshot: Snapshot, generation: int, told_id: int, state: tuple, gaps: list[int]):
    """One job; returns a message that arrived meanwhile (the work then stopped), else None."""
    past, rows, filled, step, released_at = state
    context = Context(past)
    context.rows[:] = rows
    context.filled, context.step, context.released_at = filled, step, released_at
    present = int(rows[-1, 0])
    guesses = []
    for gap in gaps:
        # the window the next onset would show, with its melody note unknown: which is likely?
        upcoming = context.resized(past)
        upcoming.onset(step + gap, present)
        roll, known = upcoming.window()
        known = known.copy()
        known[-1, 0] = False
        pitches = likely_next_pitches(snapshot, roll, known)
        known[-1, 0] = True
        guesses.append((roll, known, pitches))
    for tier in (slice(0, FIRST_PITCHES), slice(FIRST_PITCHES, None)):
        for roll, known, pitches in guesses:
            tried = pitches[tier]
            for first in range(0, len(tried), SPECULATION_BATCH):
                if jobs.poll(0):
                    return jobs.recv()  # newer work (or the end): this is moot
                rolls = []
                for pitch in tried[first:first + SPECULATION_BATCH]:
                    roll[-1, 0] = pitch
                    rolls.append(roll.copy())
                for candidate, harmony in zip(rolls, ask_engine_many(snapshot, rolls, [known] * len(rolls))):
                    answers.send(("answer", generation, told_id, window_key(candidate),
                                  tuple(int(p) for p in harmony[-1])))
    return None
