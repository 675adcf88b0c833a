"""The live soak in short: bench/bench_soak.py's hostile evening, 30 seconds of it.

Through a private JACK server (dummy driver, asynchronous, realtime), the bridge in its own
process (shipped coconet-live and rnnrbm), a python-rtmidi DAW in another playing 16ths at 160
bpm with bursts of junk, jack_midi_clock with Start/Stop, a knob turned every second (temperature,
mode note <-> phrase, engine), the DAW killed mid-note twice (note mode, phrase mode) and started
again, the JACK server killed and started again once. jack_midi_dump's record is the account
(see bench_soak's docstring for how answers are counted). One evening, then one test per bar; a
bar the bridge or a model is known to miss now and then is an xfail that says why.
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


def lost_message(report, lost: list[dict]) -> str:
    acc = report.accounting
    return (f"{len(lost)} of {acc.onsets} onsets got no answer: {lost[:5]}; JACK meanwhile: "
            f"{report.server.get('xruns')} (a loaded machine makes JACK clients late: see bench_soak)")


def rnnrbm_bare(lost: dict) -> bool:
    """An onset the bridge itself played bare (its monitor shows no harmony), rnnrbm answering."""
    return ENGINES[lost["engine"]] == "rnnrbm" and lost["why"].startswith("bare")


def test_every_onset_in_note_mode_is_answered_while_connected(soak):
    acc = soak.accounting
    assert acc.by_mode["note"] > 30 and acc.by_mode["phrase"] > 30, acc.by_mode  # both modes played
    assert acc.answered > 80
    lost = [lost for lost in acc.lost if lost["mode"] == "note" and not rnnrbm_bare(lost)]
    assert lost == [], lost_message(soak, lost)


@pytest.mark.xfail(strict=False, reason="reported: rnnrbm now and then answers a note with rests in all three "
                   "voices, most often the first note after Start (no context): offline, 1 in 90 first notes "
                   "at temperature 0 to 0.2; the bridge then plays it bare")
def test_rnnrbm_answers_every_onset_in_note_mode(soak):
    lost = [lost for lost in soak.accounting.lost if lost["mode"] == "note" and rnnrbm_bare(lost)]
    assert lost == [], lost_message(soak, lost)


# once in bench_soak.py's 30 minutes (python bench/bench_soak.py) the harmony of a note held by a
# DAW that died still sounded 1.5 s later in phrase mode; not seen since, not explained
PHRASE_EVENING = ("reported: once in 30 minutes of the soak, phrase mode left the harmony of a dead DAW's held "
                  "note sounding 1.5 s later")


def test_every_onset_in_phrase_mode_is_answered_while_connected(soak):
    lost = [lost for lost in soak.accounting.lost if lost["mode"] != "note"]
    assert lost == [], lost_message(soak, lost)


def test_no_note_hangs_at_the_end(soak):
    assert soak.completed, "the evening ended at the JACK restart: the bridge did not open its ports again"
    assert soak.accounting.hanging_end == {}


def source_kill(report, mode: str) -> dict:
    kill = next((kill for kill in report.source_kills if kill["mode"] == mode), None)
    assert kill is not None, f"the DAW was not killed in {mode} mode: {report.source_kills}"
    assert kill["melody_note_held"], f"{mode} mode: the DAW held no note when it was killed"
    return kill


def test_note_mode_bridge_ends_the_harmony_of_a_held_note_when_its_source_dies(soak):
    view = source_kill(soak, "note")["bridge_view"]   # as the bridge itself saw it (its monitor)
    assert view["sounding_at_kill"] >= 1, view        # the held note's harmony was sounding ...
    assert view["still_sounding"] == [], view         # ... and ended,
    assert view["all_ended_s"] is not None and view["all_ended_s"] <= NOTE_MODE_RELEASE_S, view   # soon


def test_note_mode_release_reaches_the_listener(soak):
    kill = source_kill(soak, "note")
    assert kill["hanging_after"] == {}, f"still sounding 1.5 s after the DAW died: {kill}"
    assert kill["release_s"] is not None and kill["release_s"] <= NOTE_MODE_RELEASE_S, kill


@pytest.mark.xfail(strict=False, reason=PHRASE_EVENING)
def test_phrase_mode_harmony_of_a_held_note_ends_when_its_source_dies(soak):
    kill = source_kill(soak, "phrase")
    assert kill["bridge_view"]["still_sounding"] == [], kill
    assert kill["hanging_after"] == {}, f"still sounding 1.5 s after the DAW died: {kill}"


def test_the_bridge_opens_its_ports_again_after_jack_was_killed(soak):
    assert soak.restart.get("ports_back_s") is not None, soak.restart
    assert soak.bridge_stats["before_close"]["ports_reopened"] == 1
    assert soak.completed


def test_no_event_errors(soak):
    for when in ("before_close", "after_close"):
        stats = soak.bridge_stats[when]
        assert stats["event_errors"] == 0, f"{when}: {stats['last_event_error']}"


def test_a_note_off_in_a_cycle_the_listener_missed_is_not_called_hanging():
    """soak_record.hanging_at_end: an echo struck twice with no note-off between is hanging, unless
    the listener missed a cycle between the two (its clocks, 750 frames apart, show the gap)."""
    import soak_record

    def record(gap: bool) -> list:
        clocks = [(frame, bytes([0xF8])) for frame in range(0, 20_000, 750) if not (gap and frame == 6_000)]
        notes = [(1_000, bytes([0x94, 74, 90])), (12_000, bytes([0x94, 74, 90])), (15_000, bytes([0x84, 74, 0]))]
        return sorted(clocks + notes, key=lambda event: event[0])

    assert soak_record.hanging_at_end(record(gap=False)) == ({(4, 74): 1}, {})
    assert soak_record.hanging_at_end(record(gap=True)) == ({}, {(4, 74): 1})
