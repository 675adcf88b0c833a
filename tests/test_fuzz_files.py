"""Files that try to break it (bench/bench_fuzz.py, in short): mutated real MIDI files through
`bachbridge harmonize` end in a result or in one line and exit status 2, never a traceback, a
hang or an output file left behind."""
from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def test_mutated_files_end_in_a_result_or_one_line(tiny_model):
    import bench_fuzz

    report = bench_fuzz.fuzz(cases=300, seed=7, model=str(tiny_model))
    assert report["failures"] == [], report["failures"][:3]
    # both ends reached: the mutations get past the parser, and some files are refused
    assert report["ok"] > 50 and report["refused"] > 50, report


def test_a_delta_time_of_days_is_refused_in_one_line_not_tried(tmp_path, tiny_model):
    """A file whose notes would last 2**27 ticks asks the model for tens of gigabytes: refused."""
    import mido

    from conftest import EXAMPLE_MELODY, run_cli

    midi = mido.MidiFile(EXAMPLE_MELODY)
    track = next(t for t in midi.tracks if any(m.type == "note_on" for m in t))
    first = next(i for i, m in enumerate(track) if m.type == "note_on")
    track.insert(first, mido.Message("note_on", note=60, velocity=80, time=2**27))
    bad = tmp_path / "days.mid"
    midi.save(bad)
    result = run_cli("harmonize", bad, "-o", tmp_path / "out.mid", "--model", tiny_model)
    assert result.returncode == 2 and not (tmp_path / "out.mid").exists()
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr and "beats" in result.stderr
