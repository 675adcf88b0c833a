"""Files a second for `bachbridge batch`: --jobs 1, --jobs 2 and --ray (a local Ray instance of 2
CPUs) over the same melodies, side by side.

    python bench/bench_batch.py [--files 500] [--model coconet] [--seed 0] [--json OUT]

The melodies are copies of the bundled example (bridge/examples/chorale_melody.mid: 9 bars of
4/4, 27 s), transposed by -6 to +6 semitones in turn, written to a temporary folder. Each way converts
all of them with the default knobs into a folder of its own, through the same functions the
command runs (`batch_convert`, `ray_batch_convert`). Its time is the whole conversion, wall clock:
loading the engine (in every worker) included, and for --ray starting the local Ray instance and
its workers and shutting it down; the Python start-up of the command is not. Every way's files
are checked byte for byte against --jobs 1's. `load` is the machine's load average (1 minute)
as each way starts: other work on the machine slows every way.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.convert import batch_convert  # noqa: E402
from bridge.onnxmodel import default_threads  # noqa: E402
from bridge.engines import model_settings  # noqa: E402

EXAMPLE = ROOT / "bridge" / "examples" / "chorale_melody.mid"


def write_melodies(folder: Path, count: int) -> None:
    """`count` copies of the example, the i-th transposed by (i mod 13) - 6 semitones."""
    for i in range(count):
        midi = mido.MidiFile(EXAMPLE)
        shift = i % 13 - 6
        for track in midi.tracks:
            for k, msg in enumerate(track):
                if msg.type in ("note_on", "note_off"):
                    track[k] = msg.copy(note=msg.note + shift)
        midi.save(folder / f"melody-{i:04d}.mid")


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=500, help="melodies to convert (default 500)")
    p.add_argument("--model", default="coconet", help="a shipped model's name or an .onnx file (default coconet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the figures to OUT as JSON")
    args = p.parse_args()

    from bridge.raybatch import LOCAL, ray_batch_convert, require_ray

    require_ray()
    settings = model_settings(args.model).replace(seed=args.seed)
    ways = {
        "--jobs 1": lambda src, dst: batch_convert(src, dst, args.model, settings, jobs=1),
        "--jobs 2": lambda src, dst: batch_convert(src, dst, args.model, settings, jobs=2),
        "--ray (local, 2 CPUs)": lambda src, dst: ray_batch_convert(src, dst, args.model, settings,
                                                                    address=LOCAL, jobs=2),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        melodies = Path(temp) / "melodies"
        melodies.mkdir()
        write_melodies(melodies, args.files)
        reference = None
        for i, (way, convert) in enumerate(ways.items()):
            out = Path(temp) / f"out-{i}"
            load = os.getloadavg()[0]   # on a shared machine, what else ran shows here
            started = time.monotonic()
            summary = convert(melodies, out)
            seconds = time.monotonic() - started
            made = contents(out)
            reference = made if reference is None else reference
            rows.append(dict(way=way, files=len(summary.converted), failed=len(summary.failed), seconds=seconds,
                             files_per_second=len(summary.converted) / seconds, load_average=load,
                             same_bytes=made == reference))
            print(f"{way}: {summary.lines()[0]}", file=sys.stderr)

    print(f"{args.files} melodies (the example, transposed), {args.model}, default knobs, seed {args.seed}; "
          f"{default_threads()} cores")
    print("times are the whole conversion: engine loading (and Ray's start and stop) included")
    print(f"{'way':<22} {'files':>5} {'seconds':>8} {'files/s':>8} {'load':>5}  same bytes as --jobs 1")
    for row in rows:
        print(f"{row['way']:<22} {row['files']:>5} {row['seconds']:>8.1f} {row['files_per_second']:>8.2f} "
              f"{row['load_average']:>5.1f}  {'yes' if row['same_bytes'] else 'NO'}")
    if args.json:
        figures = dict(files=args.files, model=args.model, seed=args.seed, cores=default_threads(), runs=rows)
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(row["same_bytes"] and not row["failed"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
