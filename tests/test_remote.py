"""bridge.live.remote: the live bridge in a process of its own, through real ports on a real JACK
server, with the tiny Coconet of the test session. Also the reason for it, side by side: a thread
of the host that holds the GIL stalls an in-process Bridge, and leaves a RemoteBridge alone."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from bridge.errors import BadInput
from bridge.live import Bridge, LiveConfig
from bridge.live.playback import file_events
from bridge.live.remote import RemoteBridge, RemoteError
from bridge.settings import Settings
from conftest import EXAMPLE_MELODY, ROOT
from jackrig import Outside, gil_block
from test_live import ECHO_CHANNEL, MELODY, cc123_channels, connect, harmony_ons, is_note_on, unreleased
from test_ports import wait_for

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0


@pytest.fixture
def remote(jack_server, tiny_model):
    with RemoteBridge(str(tiny_model), LiveConfig(clock="free"), Settings(), api="jack") as bridge:
        yield bridge


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------- what the window uses

def test_it_plays_reports_takes_knobs_and_models_and_closes_releasing_every_note(remote, outside, tiny_model,
                                                                                tmp_path):
    assert remote.input.api == "jack" and remote.input.name == "bachbridge in" and remote.alive
    assert 0 < remote.ports_up_s < 60 and remote.snapshot.model == str(tiny_model)
    sender = connect(outside)
    for pitch in MELODY[:4]:
        n = len(outside.received)
        sender.send_message([NOTE_ON, pitch, 90])
        assert wait_for(lambda: harmony_ons(outside.messages()[n:]), timeout=10), f"no harmony for {pitch}"
        sender.send_message([NOTE_OFF, pitch, 0])
    # the stats and the notes as they sound come over from the child
    assert wait_for(lambda: remote.stats.snapshot().notes_in == 4, timeout=5)
    assert remote.stats.snapshot().p99_latency_ms is not None
    assert wait_for(lambda: sum(e.voice == 0 and e.velocity > 0 for e in remote.monitor) == 4, timeout=5)
    assert [e.pitch for e in remote.monitor if e.voice == 0 and e.velocity > 0] == MELODY[:4]
    assert all(abs(e.t_ns - time.perf_counter_ns()) < 60e9 for e in remote.monitor)   # on the host's clock

    remote.update(settings=Settings(temperature=0.9), config=LiveConfig(clock="free", echo=False))
    assert remote.snapshot.settings.temperature == 0.9 and remote.snapshot.config.echo is False
    with pytest.raises(RemoteError, match="settings must be a Settings"):   # refused by the child's bridge
        remote.update(settings="warm")
    assert remote.snapshot.settings.temperature == 0.9                     # which keeps the last good ones
    other = tmp_path / "other.onnx"
    shutil.copy(tiny_model, other)
    remote.update(model=str(other))                   # loaded and warmed up in the child
    assert remote.snapshot.model == str(other)
    with pytest.raises(BadInput, match="no such model file"):
        remote.update(model=str(tmp_path / "missing.onnx"))
    assert remote.snapshot.model == str(other)

    sender.send_message([NOTE_ON, 72, 90])            # held
    assert wait_for(lambda: unreleased(outside.messages()), timeout=10)
    remote.panic()
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10)
    sender.send_message([NOTE_ON, 74, 90])            # held again, over the close
    assert wait_for(lambda: unreleased(outside.messages()), timeout=10)
    remote.close()
    assert remote.released and remote.closed and remote.ended is None
    assert wait_for(lambda: cc123_channels(outside.messages()) >= {1, 2, 3}, timeout=10)
    assert unreleased(outside.messages()) == {}
    with pytest.raises(RemoteError):
        remote.update(settings=Settings())


def test_a_file_plays_out_of_the_child_and_stops(remote, outside):
    outside.receiver("bachbridge out")
    events = file_events(EXAMPLE_MELODY)
    remote.play(events)
    assert remote.playing   # at once, before the child has taken it in
    assert wait_for(lambda: any(is_note_on(m) for m in outside.messages()), timeout=10)
    time.sleep(0.2)
    assert remote.playing
    remote.stop_playing()
    assert not remote.playing
    assert wait_for(lambda: not unreleased(outside.messages()), timeout=10)
    short = [(0, bytes([NOTE_ON, 60, 80])), (50_000_000, bytes([NOTE_OFF, 60, 0]))]
    remote.play(short)
    assert remote.playing
    assert wait_for(lambda: not remote.playing, timeout=5)   # it ended by itself, and the child said so


def test_a_bad_model_or_port_fails_the_start_with_its_reason(jack_server, tiny_model, tmp_path):
    missing = RemoteBridge(str(tmp_path / "missing.onnx"), api="jack")
    with pytest.raises(BadInput, match="no such model file"):
        missing.start()
    assert missing.closed
    nowhere = RemoteBridge(str(tiny_model), api="jack", connect_in="no such port anywhere")
    with pytest.raises(BadInput, match="no such port anywhere"):
        nowhere.start()
    assert nowhere.closed


# ------------------------------------------------------------- when the child or the host goes

def test_a_child_stopped_by_sigterm_releases_every_note_and_says_so(jack_server, tiny_model, outside):
    ended = []
    bridge = RemoteBridge(str(tiny_model), LiveConfig(clock="free"), api="jack", on_end=ended.append).start()
    try:
        sender = connect(outside)
        sender.send_message([NOTE_ON, 67, 90])   # held
        assert wait_for(lambda: harmony_ons(outside.messages()), timeout=10)
        os.kill(bridge.pid, signal.SIGTERM)
        assert wait_for(lambda: ended, timeout=20)
        assert "stopped (SIGTERM): every note released" in ended[0] and bridge.ended == ended[0] and bridge.released
        assert cc123_channels(outside.messages()) >= {ECHO_CHANNEL, 1, 2, 3}
        assert unreleased(outside.messages()) == {}
        with pytest.raises(RemoteError, match="stopped"):
            bridge.update(settings=Settings())
    finally:
        bridge.close()


def test_a_killed_child_is_reported(jack_server, tiny_model):
    ended = []
    bridge = RemoteBridge(str(tiny_model), api="jack", on_end=ended.append).start()
    try:
        os.kill(bridge.pid, signal.SIGKILL)
        assert wait_for(lambda: ended, timeout=20)
        assert "died (killed by SIGKILL)" in ended[0] and not bridge.released and bridge.closed
        bridge.panic()   # nothing to do, and no error
    finally:
        bridge.close()


HOST = """
import sys, time
from bridge.live.remote import RemoteBridge
from bridge.live import LiveConfig
bridge = RemoteBridge(sys.argv[1], LiveConfig(clock="free"), api="jack").start()
print(bridge.pid, flush=True)
time.sleep(600)
"""


def test_the_child_releases_every_note_when_its_host_dies(jack_server, tiny_model, outside):
    host = subprocess.Popen([sys.executable, "-c", HOST, str(tiny_model)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        child = int(host.stdout.readline())
        sender = connect(outside)
        sender.send_message([NOTE_ON, 67, 90])   # held
        assert wait_for(lambda: harmony_ons(outside.messages()), timeout=10)
        host.kill()                              # the window crashed
        host.wait(10)
        assert wait_for(lambda: not alive(child), timeout=20), "the bridge's process outlived its host"
        assert cc123_channels(outside.messages()) >= {ECHO_CHANNEL, 1, 2, 3}
        assert unreleased(outside.messages()) == {}
    finally:
        if host.poll() is None:
            host.kill()


# ------------------------------------------------------------- a host holding the GIL

STALL_MS = 500
STALL_GAP_FRAMES = 4_800     # a melody note every 100 ms at 48 kHz, held 4,400 frames
MARKER = CC | 15             # CC 1 on channel 16 marks (0) where to count from, (1) the block, (2) its end, (3) the end


def onset_answers(events, rate: int) -> tuple[dict, list[tuple[float, float]]]:
    """From jack_midi_dump's (frame, bytes): the markers {value: ms}, and each melody note-on
    (channel 1: the sequencer's) between markers 0 and 3 with its answer, the first note-on of the
    next burst of harmony note-ons (the bridge answers each onset with one burst, released at the
    melody's note-off before the next onset), in ms on JACK's clock."""
    marks, onsets, answers, in_burst = {}, [], [], False
    for frame, m in events:
        ms = frame * 1e3 / rate
        if m[0] == MARKER:
            marks[m[2]] = ms
        elif len(m) != 3 or m[0] & 0xE0 != NOTE_OFF or 0 not in marks:
            continue
        elif m[0] & 0x0F == ECHO_CHANNEL:
            if is_note_on(m) and 3 not in marks:
                onsets.append(ms)
        elif not is_note_on(m):
            in_burst = False
        elif not in_burst:
            in_burst = True
            if onsets and ms > onsets[0]:
                answers.append(ms)
    return marks, list(zip(onsets, answers))


@dataclass
class Stall:
    """A melody played through a bridge while a thread of the host held the GIL: latencies in ms."""
    block_ms: float
    idle: list[float]                     # of the notes played away from the block
    during: list[tuple[float, float]]     # (onset, answer) of the notes played during it
    block_end: float

    @property
    def stalled(self) -> list[float]:
        return sorted(answer - onset for onset, answer in self.during)

    def line(self) -> str:
        idle, stalled = sorted(self.idle), self.stalled
        return (f"median {idle[len(idle) // 2]:.2f} ms idle (max {idle[-1]:.2f}), "
                f"{stalled[len(stalled) // 2]:.2f} ms (max {stalled[-1]:.2f}) while the GIL was held "
                f"{self.block_ms:.0f} ms ({len(self.during)} notes)")

    def answered_meanwhile(self) -> bool:
        return all(answer < self.block_end for _, answer in self.during)

    def as_fast_as_idle(self) -> bool:
        """The median while blocked is within what a loaded 2-core machine jitters of the idle one."""
        idle, stalled = sorted(self.idle)[len(self.idle) // 2], self.stalled[len(self.during) // 2]
        return stalled <= max(3 * idle, idle + 5.0)


def stall_marker(outside: Outside):
    """The port play_through_a_stall's markers come from (one per test: the name must be unique)."""
    from jackrig import missing_programs

    if missing_programs(["jack_midiseq", "jack_midi_dump"]):
        pytest.skip("jack_midiseq and jack_midi_dump are needed (Debian: jackd2; `make test` installs it)")
    return outside.sender(virtual="stall marker")


def play_through_a_stall(server, marker, run_blocked, wait) -> Stall:
    """jack_midiseq (a process of its own) plays a melody into 'bachbridge in'; jack_midi_dump stamps,
    on JACK's clock, the melody, 'bachbridge out' and the markers `marker` (see stall_marker) sends
    right before and after a block of STALL_MS holding the GIL. `run_blocked(block)` has `block`
    run in the thread to block (and returns at once); `wait(s)` waits, letting that thread run.
    Echo off and no speculation expected."""
    from jackrig import MidiDump, MidiSeq

    hog = gil_block(STALL_MS)
    dump = MidiDump(server, "stalldump")
    seq = None
    try:
        for source in ("bachbridge out", "stall marker"):
            server.connect(source, "^stalldump:input$")
        notes = [(k * STALL_GAP_FRAMES, pitch, STALL_GAP_FRAMES * 11 // 12) for k, pitch in enumerate(MELODY[:8])]
        seq = MidiSeq(server, "stallseq", notes, loop_frames=len(notes) * STALL_GAP_FRAMES)
        server.connect("^stallseq:out$", "bachbridge in")
        server.connect("^stallseq:out$", "^stalldump:input$")
        time.sleep(0.2)
        marker.send_message([MARKER, 1, 0])
        wait(1.0)                    # idle
        done = threading.Event()
        blocked_s = []

        def block():
            marker.send_message([MARKER, 1, 1])
            started = time.perf_counter()
            hog()
            blocked_s.append(time.perf_counter() - started)
            marker.send_message([MARKER, 1, 2])
            done.set()

        run_blocked(block)
        while not done.is_set():
            wait(0.05)
        wait(0.7)                    # idle again
        marker.send_message([MARKER, 1, 3])
        time.sleep(0.2)
    finally:
        if seq is not None:
            seq.close()
        time.sleep(0.1)
        events = dump.events()
        dump.close()
    marks, pairs = onset_answers(events, server.rate)
    assert set(marks) == {0, 1, 2, 3}, f"markers seen: {marks}"
    start, end = marks[1], marks[2]
    # played during the block, early enough to be answered before it ended
    during = [(onset, answer) for onset, answer in pairs if start <= onset < end - 20]
    idle = [answer - onset for onset, answer in pairs if not start - 20 <= onset <= end + 20]
    # the block's length on the wall clock: JACK's frames (the dummy driver's) fall behind it on
    # a busy machine
    assert blocked_s[0] >= 0.9 * STALL_MS / 1e3 and len(during) >= 4 and len(idle) >= 10, (blocked_s, marks, pairs)
    return Stall(end - start, idle, during, end)


def test_a_thread_holding_the_gil_stalls_an_in_process_bridge_not_a_remote_one(jack_rig, tiny_model, outside,
                                                                                 capsys):
    from bridge.engines import load_engine

    config = LiveConfig(clock="free", speculate=False, echo=False)   # every note asks the engine
    marker = stall_marker(outside)
    figures = {}
    in_a_thread = lambda block: threading.Thread(target=block).start()   # noqa: E731
    with Bridge(load_engine(tiny_model, threads=1), config, Settings(), api="jack"):
        figures["in-process"] = play_through_a_stall(jack_rig, marker, in_a_thread, time.sleep)
    time.sleep(0.3)   # its ports gone before the next bridge's come
    with RemoteBridge(str(tiny_model), config, Settings(), api="jack"):
        figures["remote"] = play_through_a_stall(jack_rig, marker, in_a_thread, time.sleep)
    with capsys.disabled():
        for where, stall in figures.items():
            print(f"\n  {where} bridge, a thread of the host holding the GIL: note-on -> harmony {stall.line()}")
    # the block is real: the bridge that shares the host's GIL answers only once it ends (just
    # before the end marker, which the blocking thread sends once it has the GIL back)
    assert not figures["in-process"].as_fast_as_idle(), figures["in-process"]
    assert figures["remote"].answered_meanwhile() and figures["remote"].as_fast_as_idle(), figures["remote"]
