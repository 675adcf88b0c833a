"""`bachbridge batch --ray`: the batch conversion on Ray, against `--jobs 1`, on the shipped coconet.

Ray instances are kept to one at a time and 2 CPUs: the first test starts (through the command
line) a local instance of its own and ends it before the module's fixture starts the one the
other tests share.
"""
from __future__ import annotations

import subprocess
import sys

import mido
import pytest

from conftest import EXAMPLE_MELODY, ROOT, run_cli

KNOBS = ("--steps", 2, "--seed", 5)   # two Gibbs steps: fast, and every file still its own draw
GOOD = ["example.mid", "sub/fourth-up.mid", "sub/deeper/opening.MIDI"]


def make_melodies(folder):
    """The example melody, a copy a fourth up, its first phrase alone, a corrupt file and a text file."""
    (folder / "sub" / "deeper").mkdir(parents=True)
    example = mido.MidiFile(EXAMPLE_MELODY)
    example.save(folder / "example.mid")
    up = mido.MidiFile(EXAMPLE_MELODY)
    for track in up.tracks:
        for i, msg in enumerate(track):
            if msg.type in ("note_on", "note_off"):
                track[i] = msg.copy(note=msg.note + 5)
    up.save(folder / "sub" / "fourth-up.mid")
    opening = mido.MidiFile(EXAMPLE_MELODY)
    for i, track in enumerate(opening.tracks):
        opening.tracks[i] = mido.MidiTrack(track[:20] + [mido.MetaMessage("end_of_track")])
    opening.save(folder / "sub" / "deeper" / "opening.MIDI")
    (folder / "bad.mid").write_bytes(b"MThd garbage")
    (folder / "notes.txt").write_text("not MIDI, not looked at")


def files_under(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def melodies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("melodies")
    make_melodies(folder)
    return folder


@pytest.fixture(scope="module")
def one_job(melodies, tmp_path_factory) -> dict[str, bytes]:
    """What `batch --jobs 1` writes for the melodies: the bytes every Ray run must match."""
    out = tmp_path_factory.mktemp("one_job")
    result = run_cli("batch", melodies, out, "--jobs", 1, *KNOBS)
    assert result.returncode == 1, result.stderr
    made = files_under(out)
    assert sorted(made) == sorted(GOOD)
    return made


def test_local_instance_converts_what_one_job_does(melodies, one_job, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = run_cli("batch", melodies, out, *KNOBS, "--ray", "--jobs", 2)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "3 converted, 0 skipped (already there), 1 failed" in result.stdout
    assert f"failed: {melodies / 'bad.mid'}: " in result.stdout
    assert files_under(out) == one_job   # same bytes per file, and no partial or temporary file


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance of 2 CPUs for the module, in this process; -> its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_cluster_address_skips_outputs_that_exist_and_overwrites_them_when_asked(
        melodies, one_job, ray_address, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "example.mid").write_bytes(b"already here")
    first = run_cli("batch", melodies, out, *KNOBS, "--ray", ray_address)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "2 converted, 1 skipped (already there), 1 failed" in first.stdout
    assert files_under(out) == {**one_job, "example.mid": b"already here"}

    again = run_cli("batch", melodies, out, *KNOBS, "--ray", ray_address, "--overwrite")
    assert "3 converted, 0 skipped (already there), 1 failed" in again.stdout
    assert files_under(out) == one_job


def test_function_on_a_connected_ray_matches_one_job(melodies, one_job, ray_address, tmp_path):
    import ray

    from bridge.raybatch import ray_batch_convert

    seen = []
    from bridge.engines import model_settings

    # the settings the command line builds for KNOBS: the model's own defaults under them
    settings = model_settings("coconet").replace(steps=2, seed=5)
    summary = ray_batch_convert(melodies, tmp_path / "out", "coconet", settings,
                                address=ray_address, progress=lambda done, total: seen.append((done, total)))
    assert sorted(p.relative_to(melodies).as_posix() for p in summary.converted) == sorted(GOOD)
    assert [(p.name, reason.split(": ")[0]) for p, reason in summary.failed] == [
        ("bad.mid", str(melodies / "bad.mid"))]
    assert not summary.skipped and not summary.cancelled
    assert seen == [(done, 4) for done in range(5)]
    assert files_under(tmp_path / "out") == one_job
    assert ray.is_initialized()   # a connection it did not open is left open


@pytest.mark.parametrize("ray_first", [False, True], ids=["after the folders", "before them"])
def test_without_ray_it_says_how_to_install_it(tmp_path, ray_first):
    # `ray` unimportable, as where the extra is not installed
    code = "import sys; sys.modules['ray'] = None; from bridge.cli import entry; entry()"
    folders = [str(tmp_path), str(tmp_path / "out")]
    args = ["--ray", *folders] if ray_first else [*folders, "--ray"]
    result = subprocess.run([sys.executable, "-c", code, "batch", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bachbridge: --ray needs Ray, which is not installed: pip install bachbridge[scale]"]
    assert not (tmp_path / "out").exists()
