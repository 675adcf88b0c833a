"""Files that try to break it: mutated real MIDI files through `bachbridge harmonize`.

    python bench/bench_fuzz.py [--cases 10000] [--seed 0] [--model coconet] [--keep runs/fuzz-failures]

Each case takes a real file (the bundled melody, or a JSB test chorale written as a melody or as
four voices) and mutates it: every other case its bytes (bits flipped, bytes overwritten,
inserted, deleted or repeated, the file cut short, a chunk length or a delta time or a tempo made
extreme), which mostly ends in mido's refusal; the others its messages, into a well-formed file
with extreme content (notes at the ends of MIDI's range, lost note-offs, delta times of days,
tempos and time signatures no one plays, a message repeated 200 times), which reaches the
quantizer, the model and the writer. It runs
the command line on it in this process, as a shell would (`bridge.cli.main`, its stderr caught),
with `--steps 1` so that the reading and writing, not the model, take the time. Each case must
end either in exit status 0 with an output file mido reads back, or in exit status 2 with one
line on stderr naming the input, and no output file; never an exception out of `main`, never more
than CASE_SECONDS (30 s: music near the length limit, 4,096 beats, takes 3 s on a quiet machine). Failing inputs are kept (`--keep`) for reading. The engine is loaded once
and handed to every case (loading is not under test). Exit status 1 when any case failed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import signal
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASE_SECONDS = 30.0   # a melody near the length limit takes a few seconds on a quiet machine
EXAMPLE = ROOT / "bridge" / "examples" / "chorale_melody.mid"


def seed_files(folder: Path, chorales: int = 6) -> list[bytes]:
    """Real files to mutate: the bundled melody, and JSB test chorales written as melodies and
    as four voices (when the data is there)."""
    from bridge.midifile import write_melody, write_voices
    from bridge.score import Score
    from models.data import find_jsb16, load_jsb16

    files = [EXAMPLE.read_bytes()]
    data = find_jsb16()
    if data is not None:
        for i, chorale in enumerate(load_jsb16(data, "test")[:chorales]):
            melody, voices = folder / f"melody{i}.mid", folder / f"voices{i}.mid"
            write_melody(melody, chorale[:64, 0])
            write_voices(voices, Score.of(chorale[:64]))
            files += [melody.read_bytes(), voices.read_bytes()]
    return files


def _track_starts(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 8) if data[i:i + 4] == b"MTrk"]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four mutations of a MIDI file's bytes, chosen to reach past the header checks."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(10))
        at = int(rng.integers(len(out))) if out else 0
        starts = _track_starts(bytes(out)) if kind in (6, 7) else []
        if kind == 0 and out:                                   # a bit flipped
            out[at] ^= 1 << int(rng.integers(8))
        elif kind == 1 and out:                                 # a byte overwritten
            out[at] = int(rng.integers(256))
        elif kind == 2:                                         # bytes inserted
            out[at:at] = rng.integers(256, size=int(rng.integers(1, 9))).astype(np.uint8).tobytes()
        elif kind == 3 and out:                                 # bytes deleted
            del out[at:at + int(rng.integers(1, 9))]
        elif kind == 4 and out:                                 # the file cut short
            del out[max(1, at):]
        elif kind == 5 and out:                                 # a stretch repeated
            out[at:at] = out[at:at + int(rng.integers(1, 64))]
        elif kind == 6 and starts:                              # a track's length field lies
            start = int(rng.choice(starts))
            out[start + 4:start + 8] = struct.pack(">I", int(rng.choice([0, 1, 7, 2**31 - 1, 2**32 - 1,
                                                                         int(rng.integers(2**16))])))
        elif kind == 7 and starts:                              # an extreme delta time
            start = int(rng.choice(starts)) + 8
            out[start:start] = bytes([0x8F, 0xFF, 0xFF, 0x7F, 0x90, 60, 100])
        elif kind == 8 and b"\xff\x51\x03" in out:               # a tempo of 0 or of the slowest
            i = bytes(out).index(b"\xff\x51\x03") + 3
            out[i:i + 3] = bytes(rng.choice([[0, 0, 0], [0xFF, 0xFF, 0xFF], [0, 0, 1]]))
        elif kind == 9 and len(out) > 14:                       # the header's division or format
            field = int(rng.choice([8, 12]))
            out[field:field + 2] = struct.pack(">H", int(rng.choice([0, 1, 2, 0x7FFF, 0x8000, 0xE728, 0xFFFF])))
    return bytes(out)


def mutate_messages(data: bytes, rng: np.random.Generator) -> bytes:
    """A well-formed MIDI file with extreme content: messages' notes, velocities, channels and
    delta times changed, messages dropped or repeated, tempos and time signatures made extreme,
    notes left without their ends; one to six changes."""
    import mido

    midi = mido.MidiFile(file=io.BytesIO(data))
    tracks = [track for track in midi.tracks if len(track) > 1] or midi.tracks
    for _ in range(int(rng.integers(1, 7))):
        track = tracks[int(rng.integers(len(tracks)))]
        at = int(rng.integers(len(track)))
        msg = track[at]
        kind = int(rng.integers(9))
        if kind == 0 and msg.type in ("note_on", "note_off"):
            track[at] = msg.copy(note=int(rng.choice([0, 1, 35, 36, 81, 82, 126, 127, int(rng.integers(128))])))
        elif kind == 1 and msg.type == "note_on":
            track[at] = msg.copy(velocity=int(rng.choice([0, 1, 127])))
        elif kind == 2 and not msg.is_meta:
            track[at] = msg.copy(channel=int(rng.integers(16)))
        elif kind == 3:
            track[at] = msg.copy(time=int(rng.choice([0, 1, 2**20, 2**27, int(rng.integers(10_000))])))
        elif kind == 4 and track[at].type != "end_of_track":
            del track[at]                                                        # an end (or a start) lost
        elif kind == 5 and track[at].type != "end_of_track":
            track[at:at] = [msg] * int(rng.integers(1, 200))                     # a message repeated
        elif kind == 6:
            track.insert(at, mido.MetaMessage("set_tempo", tempo=int(rng.choice([1, 100, 16_777_215])), time=0))
        elif kind == 7:
            track.insert(at, mido.MetaMessage("time_signature", numerator=int(rng.choice([1, 3, 7, 255])),
                                              denominator=int(rng.choice([1, 2, 8, 128])), time=0))
        elif kind == 8:
            midi.ticks_per_beat = int(rng.choice([1, 3, 96, 32767]))
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout()


def limit_memory(gigabytes: float = 6.0) -> None:
    """A case that asks for more than this ends in MemoryError (reported) rather than the OOM killer."""
    import resource

    limit = int(gigabytes * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_case(data: bytes, folder: Path, name: str, steps: int = 1) -> str | None:
    """`bachbridge harmonize` on `data`; None when it ended as it must, else what went wrong."""
    from bridge.cli import main

    source, target = folder / f"{name}.mid", folder / f"{name}-out.mid"
    source.write_bytes(data)
    target.unlink(missing_ok=True)
    err = io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    started = time.monotonic()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["harmonize", str(source), "-o", str(target), "--steps", str(steps), "--seed", "1"])
    except CaseTimeout:
        return f"took more than {CASE_SECONDS:g} s"
    except BaseException as error:   # SystemExit included: main returns its status
        return f"raised {type(error).__name__}: {error}\n{traceback.format_exc(limit=-3)}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    took = time.monotonic() - started
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        import mido

        try:
            mido.MidiFile(target)
        except Exception as error:
            return f"exit 0 but the output does not read back: {error}"
        return None if took <= CASE_SECONDS else f"took {took:.1f} s"
    if code != 2:
        return f"exit status {code}: {err.getvalue()[-500:]}"
    if len(lines) != 1 or str(source) not in lines[0]:
        return f"exit 2 but stderr is not one line naming the file: {err.getvalue()[-500:]!r}"
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(f"{name}-out")]
    if leftovers:
        return f"exit 2 but {leftovers} left behind"
    return None


@contextlib.contextmanager
def shared_engine(model: str):
    """While it lasts, every `load_engine` gives one engine (loading is not what is fuzzed)."""
    import bridge.engines

    load = bridge.engines.load_engine
    engine = load(model, threads=1)
    bridge.engines.load_engine = lambda *args, **kwargs: engine
    try:
        yield engine
    finally:
        bridge.engines.load_engine = load


def fuzz(cases: int, seed: int, model: str, keep: Path | None = None, progress: bool = False) -> dict:
    """`cases` mutated files (see the module doc) -> {cases, seconds, ok, refused, failures}."""
    with shared_engine(model):
        return _fuzz(cases, seed, keep, progress)


def _fuzz(cases: int, seed: int, keep: Path | None, progress: bool) -> dict:
    rng = np.random.default_rng(seed)
    failures, outcomes = [], {"ok": 0, "refused": 0}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        originals = seed_files(folder)
        for case in range(cases):
            original = originals[case % len(originals)]
            data = mutate(original, rng) if case % 2 else mutate_messages(original, rng)
            why = run_case(data, folder, f"case{case}")
            if why is None:
                outcomes["ok" if (folder / f"case{case}-out.mid").exists() else "refused"] += 1
            else:
                failures.append((case, why))
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"case{case}.mid").write_bytes(data)
            (folder / f"case{case}.mid").unlink(missing_ok=True)
            (folder / f"case{case}-out.mid").unlink(missing_ok=True)
            if progress and (case + 1) % 500 == 0:
                print(f"  {case + 1} cases, {len(failures)} failed", file=sys.stderr)
    return {"cases": cases, "seconds": time.monotonic() - started, "failures": failures, **outcomes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="coconet")
    p.add_argument("--keep", type=Path, default=None, help="write each failing input here")
    args = p.parse_args()
    limit_memory()
    report = fuzz(args.cases, args.seed, args.model, args.keep, progress=True)
    print(f"{report['cases']} mutated files through `bachbridge harmonize` in {report['seconds']:.0f} s: "
          f"{report['ok']} harmonized, {report['refused']} refused with one line and exit status 2, "
          f"{len(report['failures'])} failed")
    for case, why in report["failures"][:20]:
        print(f"  case {case}: {why.splitlines()[0]}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
