"""The live soak in short: bench/bench_soak.py's hostile evening, 30 seconds of it.

Through a private JACK server (dummy driver, asynchronous, realtime), the bridge in its own
process (shipped coconet-live and rnnrbm), a python-rtmidi DAW in another playing 16ths at 160
bpm with bursts of junk, jack_midi_clock with Start/Stop, a knob turned every second (temperature,
mode note <-> phrase, engine), the DAW killed mid-note twice (note mode, phrase mode) and started
again, the JACK server killed and started again once. jack_midi_dump's record is the account
(see bench_soak's docstring for how answers are counted). One evening, then one test per bar.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

SECONDS = 30.0
ENGINES = ["coconet-live", "rnnrbm"]
# in note mode the harmony of a note held when its source died ends this soon (the bridge's
# watcher looks every 0.1 s); in phrase mode it ends one lookahead (0.75 s at 160 bpm) later
NOTE_MODE_RELEASE_S = 1.0


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    from jackrig import missing_programs

    missing = missing_programs()
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (Debian: jackd2, jack-midi-clock; `make test` installs them)")
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("python-rtmidi was built without JACK")
    import bench_soak

    workdir = tmp_path_factory.mktemp("soak")
    try:
        report = bench_soak.run_soak(SECONDS, ENGINES, workdir, slice_s=10.0, require_realtime=True)
    except bench_soak.NoRealtime as why:
        pytest.skip(str(why))
    bench_soak.print_report(report)   # shown with a failure
    return report


def evening_completed(report) -> None:
    if not report.completed:
        pytest.xfail("the evening ended at the JACK restart: the bridge did not open its ports again "
                     "(see test_the_bridge_opens_its_ports_again_after_jack_was_killed)")


def rnnrbm_in_phrase_mode(lost: dict) -> bool:
    return lost["mode"] == "phrase" and ENGINES[lost["engine"]] == "rnnrbm"


def lost_message(report, lost: list[dict]) -> str:
    acc = report.accounting
    return (f"{len(lost)} of {acc.onsets} onsets got no answer: {lost[:5]}; JACK meanwhile: "
            f"{report.server.get('xruns')} (a loaded machine makes JACK clients late: see bench_soak)")


def test_every_onset_is_answered_while_connected(soak):
    acc = soak.accounting
    assert acc.by_mode["note"] > 30 and acc.by_mode["phrase"] > 30, acc.by_mode  # both modes played
    assert acc.answered > 80
    lost = [lost for lost in acc.lost if not rnnrbm_in_phrase_mode(lost)]
    assert lost == [], lost_message(soak, lost)


@pytest.mark.xfail(strict=False, reason="bridge bug (reported): in phrase mode with rnnrbm, now and then an "
                   "onset's echo plays with no harmony under it (about one a minute here; not reproduced "
                   "in simulated time)")
def test_rnnrbm_in_phrase_mode_answers_every_onset(soak):
    lost = [lost for lost in soak.accounting.lost if rnnrbm_in_phrase_mode(lost)]
    assert lost == [], lost_message(soak, lost)


def test_no_note_hangs_at_the_end(soak):
    evening_completed(soak)
    assert soak.accounting.hanging_end == {}


def source_kill(report, mode: str) -> dict:
    kill = next((kill for kill in report.source_kills if kill["mode"] == mode), None)
    assert kill is not None, f"the DAW was not killed in {mode} mode: {report.source_kills}"
    assert kill["melody_note_held"], f"{mode} mode: the DAW held no note when it was killed"
    return kill


@pytest.mark.xfail(strict=False, reason="bridge bug (reported): when the watcher sees the source gone within a "
                   "few ms of its death, jackd (asynchronous) is still removing the dead client and drops the "
                   "cycle that carries the bridge's note-offs; nothing sends them again, so the harmony drones")
def test_note_mode_harmony_of_a_held_note_ends_when_its_source_dies(soak):
    kill = source_kill(soak, "note")
    assert kill["bridge_notes_sounding_at_kill"] >= 1, kill   # the held note's harmony was sounding ...
    assert kill["hanging_after"] == {}, f"still sounding 1.5 s after the DAW died: {kill}"   # ... and ended,
    assert kill["release_s"] is not None and kill["release_s"] <= NOTE_MODE_RELEASE_S, kill   # soon


def test_phrase_mode_harmony_of_a_held_note_ends_when_its_source_dies(soak):
    kill = source_kill(soak, "phrase")
    assert kill["hanging_after"] == {}, f"still sounding 1.5 s after the DAW died: {kill}"


def test_the_bridge_opens_its_ports_again_after_jack_was_killed(soak):
    assert soak.restart.get("ports_back_s") is not None, soak.restart
    assert soak.bridge_stats["before_close"]["ports_reopened"] == 1
    assert soak.completed


def test_no_event_errors(soak):
    for when in ("before_close", "after_close"):
        stats = soak.bridge_stats[when]
        assert stats["event_errors"] == 0, f"{when}: {stats['last_event_error']}"
