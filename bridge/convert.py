"""Offline conversion: one MIDI file, or every MIDI file under a folder.

file -> melody events -> 16th grid -> engine -> four-voice grid -> events -> file. Outputs are
written atomically (a temporary file beside the target, then a rename), so a failed or
interrupted conversion never leaves a partial file behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bridge.engines import RANK, Engine, hold_through_short_rests, load_engine
from bridge.errors import BadInput
from bridge.midifile import (VOICE_NAMES, meter_at_start, quantize, read_melody, read_voices, write_chorale,
                             write_continuation, write_regenerated)
from bridge.onnxmodel import default_threads
from bridge.score import REST, Score
from bridge.settings import Settings

MIDI_SUFFIXES = (".mid", ".midi")


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temp_path)`, then rename the temporary file onto `target`."""
    target = Path(target)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def about(source: Path):
    """A BadInput raised while working on `source` names it (a Score's or an engine's own check
    knows no file), so the one line a command prints says which file."""
    try:
        yield
    except BadInput as error:
        if error.path is None:
            raise BadInput(error.reason, source) from error
        raise


def harmonize_file(source: Path, target: Path, engine: Engine, settings: Settings,
                   track: int | None = None, variants: int = 1) -> list[Path]:
    """Read the melody of `source`, harmonize it in four voices, write `target` (with `variants`
    K > 1: K draws, likeliest first, see `variant_paths`). -> the files written."""
    source, target = Path(source), Path(target)
    check_paths(source, target, variants)
    with about(source):
        melody = read_melody(source, track=track)
        soprano, step_ticks = quantize(melody)
        known = np.zeros((len(soprano), 4), dtype=bool)
        known[:, 0] = True
        scores = ranked(engine, [engine.harmonize(soprano, seeded(settings, k)) for k in range(variants)],
                        known, settings)
    return write_variants(target, scores, lambda temp, score: write_chorale(temp, score, melody, step_ticks))


def check_paths(source: Path, target: Path, variants: int = 1) -> None:
    """BadInput unless `source` is a file, `target`'s folder exists and `variants` >= 1."""
    if variants < 1:
        raise BadInput(f"--variants must be >= 1, not {variants}")
    if not source.is_file():
        raise BadInput("no such file", source)
    if not target.parent.is_dir():
        raise BadInput("output folder does not exist", target)


def seeded(settings: Settings, variant: int) -> Settings:
    """The settings of the variant-th draw: seed, seed + 1, ... (none stays none)."""
    return settings if settings.seed is None else settings.replace(seed=settings.seed + variant)


def ranked(engine: Engine, fillings: list[Score], known: np.ndarray, settings: Settings) -> list[Score]:
    """Fillings of one score's unknown cells, likeliest first where the engine can rank them
    (RANK), else in the order drawn."""
    if len(fillings) < 2 or RANK not in engine.capabilities:
        return fillings
    likelihoods = engine.rank(fillings, known, settings)
    return [fillings[i] for i in sorted(range(len(fillings)), key=lambda i: -likelihoods[i])]


def variant_paths(target: Path, variants: int) -> list[Path]:
    """`target` alone, or TARGET-1.mid .. TARGET-K.mid (1: the likeliest where the engine ranks)."""
    if variants == 1:
        return [target]
    return [target.with_name(f"{target.stem}-{k + 1}{target.suffix}") for k in range(variants)]


def write_variants(target: Path, scores: list[Score], write: Callable[[Path, Score], None]) -> list[Path]:
    """Each score to its variant path, atomically, once every draw is done. -> the paths."""
    paths = variant_paths(target, len(scores))
    for path, score in zip(paths, scores):
        atomic_write(path, lambda temp, score=score: write(temp, score))
    return paths


def read_prime(source: Path, track: int | None = None) -> tuple[Score, np.ndarray]:
    """A file as music to continue: (Score, known). A four-voice file (read_voices) is known
    whole; otherwise its melody (the top line, or `track`) is the soprano, the other voices
    unknown, and where the melody rests for a beat or more every voice rests (known silent).
    The Score's meter comes from the time signature at the file's start."""
    melody = read_melody(source, track=track)
    meter = meter_at_start(melody)
    if track is None:
        try:
            voices = read_voices(source)
            return voices.replace(meter=meter), np.ones(voices.pitches.shape, dtype=bool)
        except BadInput:   # not four voices: the melody alone
            pass
    line, _ = quantize(melody)
    soprano = np.array(line.pitches[:, 0])
    pitches = np.full((len(soprano), 4), REST, dtype=np.int16)
    pitches[:, 0] = soprano
    onsets = np.zeros(pitches.shape, dtype=bool)
    onsets[:, 0] = line.onsets[:, 0]
    known = np.zeros(pitches.shape, dtype=bool)
    known[:, 0] = True
    known[hold_through_short_rests(soprano) < 0] = True
    return Score.of(pitches, onsets, meter=meter), known


def continue_file(source: Path, target: Path, engine: Engine, settings: Settings, bars: int,
                  variants: int = 1, track: int | None = None) -> list[Path]:
    """`source` kept exactly, with `bars` bars of continuation after it, in `variants` files
    (`variant_paths`; each its own draw: seed, seed + 1, ..., likeliest first where the engine
    ranks). A melody is continued as a melody; a four-voice file in four voices. -> the files written."""
    source, target = Path(source), Path(target)
    if bars < 1:
        raise BadInput(f"--bars must be >= 1, not {bars}")
    check_paths(source, target, variants)
    with about(source):
        prime, known = read_prime(source, track)
        voices = 4 if known.all() and len(prime) else 1
        steps = bars * prime.meter[0]
        scores = [engine.generate(prime, known, steps, seeded(settings, k)) for k in range(variants)]
        scores = ranked(engine, scores, np.concatenate([known, np.zeros((steps, 4), dtype=bool)]), settings)
    return write_variants(target, scores,
                          lambda temp, score: write_continuation(temp, source, score, len(prime), voices))


def parse_bars(text: str) -> tuple[int, int]:
    """'3' or '3-4' (bars counted from 1, both ends included) -> (first, last)."""
    first, _, last = str(text).partition("-")
    try:
        bars = (int(first), int(last or first))
    except ValueError:
        raise BadInput(f"--bars takes a bar or a range of bars such as 3-4, not {text!r}") from None
    if not 1 <= bars[0] <= bars[1]:
        raise BadInput(f"--bars must count from 1 up, first <= last, not {text!r}")
    return bars


def parse_voices(text: str) -> tuple[int, ...]:
    """'ATB' (any of S, A, T, B) -> voice indices."""
    letters = [name[0] for name in VOICE_NAMES]
    chosen = sorted({letters.index(c) for c in str(text).upper() if c in letters})
    if not chosen or any(c not in letters for c in str(text).upper()):
        raise BadInput(f"--voices takes letters of SATB, such as ATB, not {text!r}")
    return tuple(chosen)


def redrawn_cells(score: Score, first_step: int, stop_step: int, voices: tuple[int, ...]) -> np.ndarray:
    """(T, 4) the cells of the chosen voices' notes that begin in [first_step, stop_step), each
    note whole: where a chosen voice rests it still rests, and a note held into the passage
    from before is kept."""
    cells = np.zeros(score.pitches.shape, dtype=bool)
    for voice in voices:
        for _, first, stop in score.note_runs(voice):
            if first_step <= first < stop_step:
                cells[first:stop, voice] = True
    return cells


def held_past(score: Score, redrawn: np.ndarray, stop_step: int) -> Score:
    """The score with each redrawn note that reaches past `stop_step` held from there on at the
    pitch it has on the step before, unstruck: every note drawn begins in the passage."""
    pitches, onsets = np.array(score.pitches), np.array(score.onsets)
    tail = redrawn.copy()
    tail[:stop_step] = False
    for t, v in zip(*np.nonzero(tail)):
        pitches[t, v], onsets[t, v] = pitches[t - 1, v], False
    return score.replace(pitches=pitches, onsets=onsets)


def regenerate_file(source: Path, target: Path, engine: Engine, settings: Settings, bars: tuple[int, int],
                    voices: tuple[int, ...] = (1, 2, 3), variants: int = 1) -> list[Path]:
    """A four-voice file with the chosen voices' notes that begin in the chosen bars (counted
    from 1 in the file's meter) drawn again by the engine given everything around them, both
    sides (`redrawn_cells`; a note reaching past the bars holds there, `held_past`); every
    other note exactly as it was (`write_regenerated`). `variants` K > 1: K
    files, likeliest first where the engine ranks. -> the files written."""
    source, target = Path(source), Path(target)
    check_paths(source, target, variants)
    with about(source):
        bar = meter_at_start(read_melody(source))[0]
        score = read_voices(source)
        total_bars = -(-len(score) // bar)
        if bars[0] > total_bars:
            raise BadInput(f"--bars {bars[0]}-{bars[1]}: the file has {total_bars} bars")
        redrawn = redrawn_cells(score, (bars[0] - 1) * bar, bars[1] * bar, voices)
        if not redrawn.any():
            raise BadInput(f"no note of {''.join(VOICE_NAMES[v][0] for v in voices)} begins in bars {bars[0]}-{bars[1]}")
        known = ~redrawn
        fillings = [held_past(engine.fill(score, known, seeded(settings, k)), redrawn, bars[1] * bar)
                    for k in range(variants)]
        scores = ranked(engine, fillings, known, settings)
    return write_variants(target, scores, lambda temp, score: write_regenerated(temp, source, score, redrawn))


# ---- batch ----------------------------------------------------------------------------------

@dataclass
class BatchSummary:
    converted: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False   # stopped by `cancel` before every file was done

    def lines(self) -> list[str]:
        out = [f"{len(self.converted)} converted, {len(self.skipped)} skipped (already there), "
               f"{len(self.failed)} failed, in {self.seconds:.1f} s{' (cancelled)' if self.cancelled else ''}"]
        out += [f"  failed: {reason}" for _, reason in self.failed]
        return out


def find_midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def file_seed(seed: int | None, relative: Path) -> int | None:
    """A per-file seed that depends on the file, not on the order the workers take files in."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}:{relative.as_posix()}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class BatchRun:
    """One batch's bookkeeping, whatever converts its files (this process, a process pool, a Ray
    cluster): `work`, the files to convert, each (source, target, its settings with the per-file
    seed); the summary, with the files skipped because their output exists (unless `overwrite`);
    and the progress callback, told (done, len(work)) from the start and after each file."""

    def __init__(self, in_dir: Path, out_dir: Path, settings: Settings, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None):
        in_dir, out_dir = Path(in_dir), Path(out_dir)
        if not in_dir.is_dir():
            raise BadInput("no such folder", in_dir)
        self.started = time.monotonic()
        self.summary = BatchSummary()
        self.work: list[tuple[Path, Path, Settings]] = []
        for source in find_midi_files(in_dir):
            relative = source.relative_to(in_dir)
            target = out_dir / relative
            if target.exists() and not overwrite:
                self.summary.skipped.append(source)
            else:
                self.work.append((source, target, settings.replace(seed=file_seed(settings.seed, relative))))
        self.progress = progress
        self.done = 0
        if progress:
            progress(self.done, len(self.work))

    def make_folders(self) -> None:
        """The output folders; called once the engine has loaded, so a bad model leaves none."""
        for _, target, _ in self.work:
            target.parent.mkdir(parents=True, exist_ok=True)

    def record(self, source: Path, failure: str | None) -> None:
        """A file done: converted (`failure` None) or failed for the one-line reason `failure`."""
        if failure is None:
            self.summary.converted.append(source)
        else:
            self.summary.failed.append((source, failure))
        self.done += 1
        if self.progress:
            self.progress(self.done, len(self.work))

    def finish(self) -> BatchSummary:
        self.summary.cancelled = self.done < len(self.work)  # only a cancel leaves work undone
        self.summary.seconds = time.monotonic() - self.started
        return self.summary


def failure_of(source: Path, convert: Callable[[], object]) -> str | None:
    """Run `convert()`, the conversion of `source`; the one-line reason when it fails, else None.
    A bad file or a bug must not stop the other files of a batch, so nothing is raised."""
    try:
        convert()
        return None
    except BadInput as error:
        return str(error)
    except Exception as error:  # a bug: say which file hit it
        return f"{source}: internal error: {type(error).__name__}: {error}"


# each worker process loads its engine once
_worker_engine: Engine | None = None


def _init_worker(model: str, threads: int) -> None:
    global _worker_engine
    _worker_engine = load_engine(model, threads=threads, spin=False)


def _convert_one(source: Path, target: Path, settings: Settings, track: int | None) -> str | None:
    """Convert one file with this process's engine; the one-line reason when it fails, else None."""
    return failure_of(source, lambda: harmonize_file(source, target, _worker_engine, settings, track))


def batch_convert(in_dir: Path, out_dir: Path, model: str, settings: Settings, jobs: int = 1,
                  overwrite: bool = False, track: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None) -> BatchSummary:
    """Harmonize every MIDI file under `in_dir` into the same relative path under `out_dir`.

    `cancel` (set from another thread) stops it between files: files not started are left alone
    (none half-written: each is written atomically), those already running in the pool finish,
    and the summary says `cancelled`."""
    run = BatchRun(in_dir, out_dir, settings, overwrite, progress)
    work = run.work
    jobs = max(1, min(jobs, len(work) or 1))
    threads = max(1, default_threads() // jobs)
    global _worker_engine
    _worker_engine = load_engine(model, threads=threads, spin=jobs == 1)  # a bad model fails here, once
    run.make_folders()

    cancelled = cancel.is_set if cancel is not None else lambda: False
    if jobs == 1:
        for source, target, file_settings in work:
            if cancelled():
                break
            run.record(source, _convert_one(source, target, file_settings, track))
    else:
        # spawned, not forked: a fork would copy onnxruntime's and numba's thread state mid-flight
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(model, threads)) as pool:
            futures = {pool.submit(_convert_one, s, t, fs, track): s for s, t, fs in work}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    run.record(futures[future], future.result())
                if cancelled():
                    # drop what has not started; what already runs finishes and is recorded. (Not
                    # as_completed with shutdown(cancel_futures=True): it never sees those cancelled.)
                    pending = {future for future in pending if not future.cancel()}
    return run.finish()
