"""bridge.ports through real ports on a real JACK server (dummy driver, 48 kHz, 64 frames): our
virtual 'bachbridge in' / 'bachbridge out', and an outside rtmidi client playing the DAW."""
from __future__ import annotations

import glob
import os
import statistics
import threading
import time

import pytest

from bridge.ports import (MidiInput, MidiOutput, PortError, auto_api, check_message, find_port, jack_running,
                          list_apis, list_ports, pick_api)
from conftest import run_cli
from jackrig import gil_block

NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


@pytest.fixture
def midi_in(jack_server):
    with MidiInput(api="jack") as port:
        yield port


@pytest.fixture
def midi_out(jack_server):
    with MidiOutput(api="jack") as port:
        yield port


# ------------------------------------------------------------- without a MIDI system

def test_check_message_accepts_short_messages_only():
    assert check_message([0x90, 60, 100]) == b"\x90\x3c\x64"
    assert check_message(b"\xc3\x05") == b"\xc3\x05"
    assert check_message((0xF8,)) == b"\xf8"
    assert check_message(bytearray([0xF2, 0, 8])) == b"\xf2\x00\x08"
    for bad in ([], [60], [0x90, 60], [0x90, 60, 128], [0x90, 60, 100, 1], [0xC0, 1, 2], [0xF0, 1, 0xF7],
                [0xF7], [0xF4], [0xFD], [300, 1, 1], "abc", None, 7):
        with pytest.raises(ValueError):
            check_message(bad)


def test_find_port_exact_then_unique_substring():
    names = ["bachbridge:bachbridge in", "a2j:Keystation 49 [20] (capture): Keystation", "DAW:out 1", "DAW:out 10"]
    assert find_port(names, "bachbridge in", "input") == 0
    assert find_port(names, "keystation", "input") == 1
    assert find_port(names, "out 1", "input") == 2  # exact port name beats the substring 'out 10'
    with pytest.raises(PortError, match="2 MIDI input ports match"):
        find_port(names, "DAW", "input")
    with pytest.raises(PortError, match="no MIDI input port matches 'loopMIDI'"):
        find_port(names, "loopMIDI", "input")


def test_no_jack_server_is_reported_not_started(monkeypatch):
    """With no server under that name, auto does not pick JACK, starts none, and `ports` says so."""
    missing = f"bachbridge-nobody-{os.getpid()}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", missing)
    monkeypatch.delenv("JACK_NO_START_SERVER", raising=False)
    choice = pick_api()
    assert choice.api != "jack", choice
    if choice.api is None:
        assert "no JACK server" in choice.reason or "jack" not in list_apis()
    result = run_cli("ports", timeout=30)
    assert result.returncode == 0, result.stderr
    assert "auto picks:" in result.stdout
    assert not glob.glob(f"/dev/shm/jack_{missing}_*"), "a JACK server was started"
    if "jack" in list_apis():
        with pytest.raises(PortError, match="no JACK server"):
            MidiInput(api="jack")


# ------------------------------------------------------------- through JACK

def test_auto_picks_the_running_jack_server(jack_server):
    assert auto_api() == "jack"
    assert jack_server in pick_api().reason


@pytest.mark.parametrize("callback", [False, True], ids=["rtmidi-queue", "callback"])
def test_note_into_virtual_input_is_polled_with_a_timestamp(jack_server, outside, capsys, callback):
    with MidiInput(api="jack", callback=callback) as midi_in:
        assert midi_in.uses_callback is callback
        assert midi_in.open_s < 2.0
        sender = outside.sender("bachbridge in")
        t0 = time.perf_counter_ns()
        sender.send_message([NOTE_ON, 60, 100])
        got = []
        assert wait_for(lambda: got.extend(midi_in.poll()) or got), "note-on never reached 'bachbridge in'"
        t1 = time.perf_counter_ns()
    assert [m for m, _ in got] == [bytes([NOTE_ON, 60, 100])]
    assert isinstance(got[0][0], bytes) and t0 <= got[0][1] <= t1
    assert midi_in.closed and midi_in.poll() == []
    midi_in.close()  # idempotent
    with capsys.disabled():
        print(f"\n  MidiInput ({'callback' if callback else 'rtmidi queue'}) open on JACK: "
              f"{midi_in.open_s * 1e3:.1f} ms")


def test_send_reaches_an_outside_input(midi_out, outside, capsys):
    outside.receiver("bachbridge out")
    midi_out.send([NOTE_ON | 1, 64, 90])
    midi_out.send(bytes([NOTE_OFF | 1, 64, 0]))
    assert wait_for(lambda: len(outside.received) >= 2)
    assert outside.messages() == [bytes([NOTE_ON | 1, 64, 90]), bytes([NOTE_OFF | 1, 64, 0])]
    assert midi_out.sounding() == {}
    with capsys.disabled():
        print(f"\n  MidiOutput open on JACK: {midi_out.open_s * 1e3:.1f} ms")


def test_close_releases_every_sounding_note_then_cc123(jack_server, outside):
    out = MidiOutput(api="jack")
    outside.receiver("bachbridge out")
    sent = [[NOTE_ON | 1, 60, 80], [NOTE_ON | 2, 55, 70], [NOTE_ON | 3, 48, 60],
            [NOTE_ON | 3, 48, 61],  # a second voice on that key: struck again (a note-off goes first)
            [NOTE_OFF | 2, 55, 0], [NOTE_ON | 1, 67, 80], [NOTE_ON | 1, 67, 0],  # velocity 0 releases too
            [CC | 1, 64, 127]]  # sustain pedal down
    for message in sent:
        out.send(message)
    assert out.sounding() == {(1, 60): 1, (3, 48): 2}
    on_the_wire = len(sent) + 1
    assert wait_for(lambda: len(outside.received) >= on_the_wire)
    assert outside.messages()[3:5] == [bytes([NOTE_OFF | 3, 48, 0]), bytes([NOTE_ON | 3, 48, 61])]
    out.close()
    out.close()  # idempotent
    assert out.closed
    assert wait_for(lambda: len(outside.received) >= on_the_wire + 2 + 1 + 3)
    time.sleep(0.02)  # nothing more comes
    tail = outside.messages()[on_the_wire:]
    assert tail == [bytes([NOTE_OFF | 1, 60, 0]), bytes([NOTE_OFF | 3, 48, 0]),   # one note-off a key
                    bytes([CC | 1, 64, 0]),
                    bytes([CC | 1, 123, 0]), bytes([CC | 2, 123, 0]), bytes([CC | 3, 123, 0])]
    # every note-on is matched by a note-off, per channel and key
    ons, offs = {}, {}
    for m in outside.messages():
        if m[0] & 0xF0 == NOTE_ON and m[2] > 0:
            ons[(m[0] & 15, m[1])] = ons.get((m[0] & 15, m[1]), 0) + 1
        elif m[0] & 0xF0 in (NOTE_ON, NOTE_OFF):
            offs[(m[0] & 15, m[1])] = offs.get((m[0] & 15, m[1]), 0) + 1
    assert ons == offs
    with pytest.raises(ValueError, match="closed"):
        out.send([NOTE_ON, 60, 100])


def test_all_notes_off_on_chosen_channels(midi_out, outside):
    outside.receiver("bachbridge out")
    midi_out.send([NOTE_ON, 72, 100])
    with pytest.raises(ValueError):
        midi_out.all_notes_off([16])
    assert midi_out.all_notes_off([1, 2, 3]) == 5   # CC 123 on the channel sent on, and on those asked
    assert wait_for(lambda: len(outside.received) >= 6)
    assert outside.messages() == [bytes([NOTE_ON, 72, 100]), bytes([NOTE_OFF, 72, 0]), bytes([CC, 123, 0]),
                                  bytes([CC | 1, 123, 0]), bytes([CC | 2, 123, 0]), bytes([CC | 3, 123, 0])]


def test_invalid_bytes_raise_and_are_not_sent(midi_out, outside):
    outside.receiver("bachbridge out")
    for bad in ([0x90, 60], [0x90, 60, 128], [60, 100], [0xF0, 0x7E, 0xF7], [0xC0, 1, 2], [], [0x90, -1, 3]):
        with pytest.raises(ValueError):
            midi_out.send(bad)
    midi_out.send([CC, 7, 100])  # a marker: the only thing that may arrive
    assert wait_for(lambda: outside.received)
    time.sleep(0.02)
    assert outside.messages() == [bytes([CC, 7, 100])]
    assert midi_out.sounding() == {}


@pytest.mark.parametrize("callback", [False, True], ids=["rtmidi-queue", "callback"])
def test_sysex_and_active_sensing_ignored_clock_kept(jack_server, outside, callback):
    with MidiInput(api="jack", callback=callback) as midi_in:
        sender = outside.sender("bachbridge in")
        sender.send_message([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])  # SysEx identity request
        sender.send_message([0xFE])  # active sensing
        sender.send_message([0xF8])  # timing clock
        sender.send_message([NOTE_ON, 62, 50])
        got = []
        assert wait_for(lambda: got.extend(midi_in.poll()) or any(m[0] == NOTE_ON for m, _ in got))
        time.sleep(0.02)
        got.extend(midi_in.poll())
    assert [m for m, _ in got] == [b"\xf8", bytes([NOTE_ON, 62, 50])]
    assert got[0][1] <= got[1][1]


@pytest.mark.parametrize("callback", [False, True], ids=["rtmidi-queue", "callback"])
def test_an_unterminated_sysex_does_not_make_the_input_deaf(jack_server, outside, callback):
    with MidiInput(api="jack", callback=callback) as midi_in:
        sender = outside.sender("bachbridge in")
        sender.send_message([0xF0])                # SysEx start, never ended
        sender.send_message([0xF0, 0x43, 0x10])    # another
        time.sleep(0.01)
        got = []
        deadline = time.monotonic() + 2
        while not any(m[0] == NOTE_ON for m, _ in got) and time.monotonic() < deadline:
            sender.send_message([NOTE_ON, 64, 50])  # the player tries again, as one would
            time.sleep(0.02)
            got.extend(midi_in.poll())
        assert any(m == bytes([NOTE_ON, 64, 50]) for m, _ in got), "the input went deaf"
        assert all(m[0] == NOTE_ON for m, _ in got)  # the guard's 0xF7 never shows


def test_jack_input_survives_a_thread_hogging_the_gil(midi_in, outside):
    """Bursts arrive whole, in order, without duplicates while another thread holds the GIL and
    burns a core (the engine may): the JACK input never runs Python in JACK's process thread."""
    assert not midi_in.uses_callback
    sender = outside.sender("bachbridge in")
    stop = threading.Event()
    burn = gil_block(3.0)   # 3 ms at a time: more than two JACK periods

    def hog():
        while not stop.is_set():
            burn()
            time.sleep(0.0001)

    threading.Thread(target=hog, daemon=True).start()
    try:
        for burst in range(10):
            sent = [bytes([NOTE_ON | burst, 40 + k, 1 + k]) for k in range(12)]
            for m in sent:
                sender.send_message(m)
            got = []
            assert wait_for(lambda: got.extend(midi_in.poll()) or len(got) >= len(sent)), [m.hex() for m, _ in got]
            time.sleep(0.005)
            got.extend(midi_in.poll())
            assert [m for m, _ in got] == sent
            stamps = [t for _, t in got]
            assert stamps == sorted(stamps)
    finally:
        stop.set()


def test_ports_command_lists_the_open_ports(midi_in, midi_out):
    listed = list_ports("jack")
    assert any(n.endswith(":bachbridge in") for n in listed["outputs"]), listed
    assert any(n.endswith(":bachbridge out") for n in listed["inputs"]), listed
    result = run_cli("ports", timeout=30)  # JACK_DEFAULT_SERVER is inherited from the fixture
    assert result.returncode == 0, result.stderr
    assert "MIDI APIs compiled in:" in result.stdout and "jack" in result.stdout
    assert "auto picks: jack" in result.stdout
    assert ":bachbridge in" in result.stdout and ":bachbridge out" in result.stdout, result.stdout


def test_asking_whether_jack_runs_and_listing_its_ports_activates_no_client(midi_in, midi_out, monkeypatch):
    """A window lists the ports often; an rtmidi client is activated as it opens, so each listing
    would change the server's graph (see bridge.ports._jack_graph). Here every rtmidi client
    refuses to open: the answers come from a passive client all the same."""
    import rtmidi

    def refused(*args, **kwargs):
        raise AssertionError("an rtmidi client was opened to list ports")

    monkeypatch.setattr(rtmidi, "MidiIn", refused)
    monkeypatch.setattr(rtmidi, "MidiOut", refused)
    assert jack_running()
    listed = list_ports("jack")
    assert [n for n in listed["outputs"] if n.endswith(":bachbridge in")] == [midi_in.full_name]
    assert any(n.endswith(":bachbridge out") for n in listed["inputs"]), listed


def test_connect_to_existing_ports_by_name(jack_server, outside):
    """connect=: our port attaches to someone else's (here: the outside client's virtual ports)."""
    daw_out = outside.sender(virtual="daw melody")
    outside.receiver(virtual="daw harmony")
    with MidiInput("bb in", api="jack", connect="daw melody") as inp, \
            MidiOutput("bb out", api="jack", connect="daw harmony") as out:
        assert inp.connected_to.endswith(":daw melody") and out.connected_to.endswith(":daw harmony")
        daw_out.send_message([NOTE_ON, 65, 99])
        got = []
        assert wait_for(lambda: got.extend(inp.poll()) or got)
        out.send(got[0][0])
        assert wait_for(lambda: outside.received)
    assert outside.messages()[0] == bytes([NOTE_ON, 65, 99])
    assert wait_for(lambda: bytes([NOTE_OFF, 65, 0]) in outside.messages())  # released on close
    with pytest.raises(PortError, match="no MIDI input port matches"):
        MidiInput(api="jack", connect="no such port anywhere")


def test_echo_round_trip(midi_in, midi_out, outside, capsys):
    """outside out -> 'bachbridge in' -> poll loop -> 'bachbridge out' -> outside in, 200 notes.
    Only that it works is asserted; the figures are printed (bars live in bench/)."""
    sender = outside.sender("bachbridge in")
    outside.receiver("bachbridge out")
    stop = threading.Event()

    def echo():
        while not stop.is_set():
            for data, _ in midi_in.poll():
                midi_out.send(data)
            time.sleep(0.0002)

    worker = threading.Thread(target=echo, daemon=True)
    worker.start()
    rtts = []
    try:
        for i in range(200):
            pitch = 36 + i % 48
            n = len(outside.received)
            t_send = time.perf_counter_ns()
            sender.send_message([NOTE_ON, pitch, 100])
            assert wait_for(lambda: len(outside.received) > n, timeout=1.0), f"note {i} never came back"
            data, t_back = outside.received[n]
            assert data == bytes([NOTE_ON, pitch, 100])
            rtts.append((t_back - t_send) / 1e6)
            sender.send_message([NOTE_OFF, pitch, 0])
            assert wait_for(lambda: len(outside.received) > n + 1, timeout=1.0)
    finally:
        stop.set()
        worker.join(2)
    assert midi_out.sounding() == {}
    q = statistics.quantiles(rtts, n=100)
    with capsys.disabled():
        print(f"\n  JACK echo round trip over {len(rtts)} notes: p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, "
              f"max {max(rtts):.2f} ms")
