"""Live MIDI ports: a virtual (or existing) input and output over python-rtmidi.

Modelled on mido's split: everything here except `_open_rtmidi` and the few lines that call the
rtmidi object is plain Python with no MIDI system in it (API choice, port-name matching, message
validation, note bookkeeping); the backend is python-rtmidi alone.

- `MidiInput`: nothing happens on rtmidi's thread but stamping and queueing (python-rtmidi's
  midifilter example): on ALSA/CoreMIDI/WinMM a Python callback appends (data, perf_counter_ns())
  to a bounded deque; on JACK rtmidi's own C++ queue is used, so that no Python (and no GIL) ever
  runs in JACK's process thread (see MidiInput). `poll()` drains either as (bytes, t_ns) pairs.
  SysEx and active sensing are dropped inside rtmidi; timing clock comes through (the live loop
  follows the DAW's clock).
- `MidiOutput`: `send()` validates a short MIDI message (ValueError otherwise, nothing sent) and
  keeps the one record of what sounds (`bridge.sounding`), so that `release()`,
  `all_notes_off()` and `close()` silence exactly those notes (note-offs, then CC 123).

API names are 'alsa', 'jack', 'coremidi', 'winmm'. `auto_api()` never starts a JACK server.
"""
from __future__ import annotations

import collections
import glob
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from bridge.errors import BadInput
from bridge.scheduling import short_slice_for_new_threads
from bridge.sounding import Sounding

DEFAULT_IN = "bachbridge in"
DEFAULT_OUT = "bachbridge out"
CLIENT_NAME = "bachbridge"

# our names for rtmidi's API constants (by attribute name, so a python-rtmidi without one still imports)
_API_CONSTANTS = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE",
                  "winmm": "API_WINDOWS_MM"}
# what auto_api tries, in order
_AUTO_ORDER = ("jack", "alsa", "coremidi", "winmm")

ALSA_SEQ = "/dev/snd/seq"

# JACK: a connection made a moment ago may not carry the very next cycle's events yet, and a port
# unregistered while libjack's notification thread still handles a graph change can crash the
# process (jack2 issues #216 and #340: HandleLatencyCallback walks the client's port list while it
# changes). Waiting a few periods after connecting and before closing avoids both in practice.
JACK_SETTLE_S = 0.02

# JACK: rtmidi takes a SysEx start with no end (a lone 0xF0, i.e. malformed input) for a SysEx that
# goes on, and swallows every later event until one ends in 0xF7: the input would go deaf. So a
# guard (one more JACK client, its port 'sysex guard' connected to our input) sends a lone 0xF7
# whenever nothing came for this long; that ends such a SysEx (rtmidi drops it, as it drops every
# SysEx here), and poll() drops the guard's 0xF7 itself. What comes in that long after such junk
# (and a JACK period or two) is lost; idle, the guard costs 200 tiny events a second.
SYSEX_GUARD_S = 0.005
_END_OF_SYSEX = b"\xf7"


class PortError(BadInput):
    """A MIDI system or port that cannot be used (no server, no such port, ...): one-line reason."""


class NoMidiSystem(PortError):
    """No usable MIDI API on this machine."""


# ---------------------------------------------------------------- APIs

def _rtmidi():
    import rtmidi

    return rtmidi


def _api_const(api: str) -> int:
    if api not in _API_CONSTANTS:
        raise PortError(f"unknown MIDI API {api!r} (known: {', '.join(_API_CONSTANTS)})")
    return getattr(_rtmidi(), _API_CONSTANTS[api])


def list_apis() -> list[str]:
    """The MIDI APIs compiled into python-rtmidi, by our names ('alsa', 'jack', 'coremidi', 'winmm')."""
    rtmidi = _rtmidi()
    by_const = {getattr(rtmidi, const): name for name, const in _API_CONSTANTS.items() if hasattr(rtmidi, const)}
    return [by_const[c] for c in rtmidi.get_compiled_api() if c in by_const]


@contextmanager
def _no_jack_autostart():
    """libjack may start a server when a client opens; JACK_NO_START_SERVER=1 forbids it (rtmidi
    also asks libjack not to). Set once and left set, for this process and its children: changing
    the environment back and forth while JACK's threads run could race with their getenv()."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    yield


@contextmanager
def _quiet_stderr():
    """Silence C-level stderr (libjack's and alsa-lib's complaints) while probing."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def jack_server_name() -> str:
    return os.environ.get("JACK_DEFAULT_SERVER") or "default"


def _jack_socket_present(server: str) -> bool:
    """Cheap pre-check on Linux: a JACK server leaves a socket (jack2: /dev/shm/jack_NAME_UID_0,
    jack1: /dev/shm/jack-UID/NAME/). Absent socket = surely no server, and no libjack noise."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap test elsewhere: let the probe decide
    name = glob.escape(server)
    dirs = {os.environ.get("JACK_SOCKET_DIR") or "/dev/shm", "/dev/shm", "/tmp"}
    for d in dirs:
        d = glob.escape(d)
        if glob.glob(f"{d}/jack_{name}_*_0") or glob.glob(f"{d}/jack-*/{name}"):
            return True
    return False


def jack_running() -> bool:
    """True when a JACK server (JACK_DEFAULT_SERVER, else 'default') accepts clients. Never starts
    one. Asked, like `list_ports`, through a client that is never activated (see _jack_graph)."""
    if "jack" not in list_apis() or not _jack_socket_present(jack_server_name()):
        return False
    try:
        _jack_graph(f"{CLIENT_NAME}-probe").close()
    except PortError:
        return False
    return True


def _jack_graph(client_name: str):
    """A passive JACK client (bridge.jackgraph.JackGraph): never activated, it takes no part in
    the process cycle. An rtmidi client is activated as it opens: each one opened and closed at
    once (a window listing the ports made three probes and two lists) changed the server's graph
    twice, and jack2 now and then stops running its graph as several programs' clients come and
    go at once (every cycle times out until they leave: jack2 issue #156, and seen in --sync mode
    in this project's tests)."""
    from bridge.jackgraph import JackGraph

    with _quiet_stderr():
        return JackGraph(client_name)


def api_status(api: str) -> tuple[bool, str]:
    """(usable, why) for one API on this machine, cheaply and without starting anything."""
    if api not in _API_CONSTANTS:
        return False, f"unknown MIDI API {api!r}"
    if api not in list_apis():
        return False, "not compiled into python-rtmidi"
    if api == "jack":
        server = jack_server_name()
        if jack_running():
            return True, f"a JACK server ({server!r}) is running"
        return False, f"no JACK server ({server!r}) is running"
    if api == "alsa":
        if os.path.exists(ALSA_SEQ):
            if os.access(ALSA_SEQ, os.R_OK | os.W_OK):
                return True, f"{ALSA_SEQ} exists (ALSA sequencer)"
            return False, f"{ALSA_SEQ} exists but is not readable and writable by this user (audio group?)"
        return False, f"no ALSA sequencer ({ALSA_SEQ} does not exist)"
    if api == "coremidi":
        return (True, "macOS") if sys.platform == "darwin" else (False, "not macOS")
    if api == "winmm":
        if sys.platform == "win32":
            return True, "Windows (WinMM has no virtual ports: connect to loopMIDI ports by name)"
        return False, "not Windows"
    return False, "unknown"


# what to do when pick_api finds nothing (only on Linux: macOS and Windows always have theirs)
START_A_MIDI_SYSTEM = ("start one: a JACK server (qjackctl, `jackd -d alsa`, or PipeWire's JACK) "
                       "or ALSA's sequencer (`sudo modprobe snd-seq`)")


@dataclass(frozen=True)
class ApiChoice:
    api: str | None  # None: nothing usable
    reason: str


def pick_api() -> ApiChoice:
    """What auto picks, and why: JACK when a server runs, else ALSA when /dev/snd/seq exists,
    else CoreMIDI on macOS, else WinMM on Windows."""
    compiled = list_apis()
    why_not = []
    for api in _AUTO_ORDER:
        if api not in compiled:
            continue
        usable, why = api_status(api)
        if usable:
            return ApiChoice(api, why + (f"; {'; '.join(why_not)}" if why_not else ""))
        why_not.append(why)
    if not compiled:
        return ApiChoice(None, "python-rtmidi has no MIDI API compiled in")
    return ApiChoice(None, "no MIDI system found: " + "; ".join(why_not) + f"; {START_A_MIDI_SYSTEM}")


def auto_api() -> str:
    """The API to use on this machine (see `pick_api`); NoMidiSystem when there is none."""
    choice = pick_api()
    if choice.api is None:
        raise NoMidiSystem(choice.reason)
    return choice.api


def _open_rtmidi(kind: str, api: str, client_name: str, **rtmidi_kw):
    """A python-rtmidi MidiIn/MidiOut on `api`, or PortError with the reason (no stderr noise)."""
    rtmidi = _rtmidi()
    cls = rtmidi.MidiIn if kind == "in" else rtmidi.MidiOut
    const = _api_const(api)
    if api not in list_apis():
        raise PortError(f"MIDI API {api!r} is not compiled into python-rtmidi (have: {', '.join(list_apis())})")
    if api == "alsa" and not os.path.exists(ALSA_SEQ):
        raise PortError(f"no ALSA sequencer ({ALSA_SEQ} does not exist)")
    if api == "jack" and not _jack_socket_present(jack_server_name()):
        raise PortError(f"no JACK server ({jack_server_name()!r}) is running")
    with _no_jack_autostart(), _quiet_stderr(), short_slice_for_new_threads():  # a JACK client's threads start here
        try:
            return cls(const, name=client_name, **rtmidi_kw)
        except rtmidi.RtMidiError as error:
            raise PortError(f"cannot open a {api} MIDI client: {error}") from None


def list_ports(api: str) -> dict[str, list[str]]:
    """Ports `api` sees, mido-style: 'inputs' are ports we can receive from (use with
    MidiInput(connect=...)), 'outputs' are ports we can send to (MidiOutput(connect=...))."""
    usable, why = api_status(api)
    if not usable:
        raise PortError(f"{api}: {why}")
    if api == "jack":
        with _jack_graph(f"{CLIENT_NAME}-list") as graph:
            return {"inputs": graph.ports(outputs=True), "outputs": graph.ports(inputs=True)}
    found = {}
    for key, kind in (("inputs", "in"), ("outputs", "out")):
        client = _open_rtmidi(kind, api, f"{CLIENT_NAME}-list")
        try:
            found[key] = list(client.get_ports())
        finally:
            client.delete()
    return found


def find_port(names: list[str], wanted: str, what: str) -> int:
    """Index of the port whose name is `wanted` or (case-insensitively) contains it, uniquely."""
    exact = [i for i, n in enumerate(names) if n == wanted or n.split(":", 1)[-1] == wanted]
    if len(exact) == 1:
        return exact[0]
    hits = exact or [i for i, n in enumerate(names) if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    have = ", ".join(repr(n) for n in names) or "none"
    if not hits:
        raise PortError(f"no MIDI {what} port matches {wanted!r} (have: {have})")
    raise PortError(f"{len(hits)} MIDI {what} ports match {wanted!r}: "
                    + ", ".join(repr(names[i]) for i in hits) + " (give more of the name)")


class _Port:
    """What MidiInput and MidiOutput share: open (virtual or connect) and report how long it took."""

    kind = ""  # "in" or "out"
    what = ""  # for messages

    def _open(self, name: str, api: str | None, connect: str | None, client_name: str, **rtmidi_kw):
        self.api = api or auto_api()
        self.name = name
        self.connected_to = None  # the existing port's full name when connect= was given
        self._connect = connect   # what the user asked to connect to
        t0 = time.perf_counter()
        if self.api == "winmm" and connect is None:
            raise PortError("WinMM has no virtual ports: create one with loopMIDI (or Windows MIDI "
                            "Services loopback) and connect to it by name")
        port = _open_rtmidi(self.kind, self.api, client_name, **rtmidi_kw)
        try:
            with _no_jack_autostart():
                if connect is None:
                    port.open_virtual_port(name)
                else:
                    names = list(port.get_ports())
                    index = find_port(names, connect, self.what)
                    port.open_port(index, name)
                    self.connected_to = names[index]
                    if self.api == "jack":
                        time.sleep(JACK_SETTLE_S)
        except BaseException as error:
            port.delete()
            if isinstance(error, _rtmidi().RtMidiError):
                raise PortError(f"cannot open MIDI {self.what} port {name!r} on {self.api}: {error}") from None
            raise
        self.open_s = time.perf_counter() - t0  # seconds to get the port up (auto_api's probe not counted)
        return port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):  # pragma: no cover - overridden
        raise NotImplementedError


class MidiInput(_Port):
    """A MIDI input: a virtual port `name` (default 'bachbridge in'), or, with `connect=`, our port
    connected to the existing port whose name contains that text.

    `poll()` returns what arrived since the last call, oldest first, as (bytes, perf_counter_ns).
    SysEx and active sensing are dropped inside rtmidi; timing clock comes through.

    Two ways in, chosen by `callback` (default: True for every API but JACK):
    - callback: rtmidi's thread calls a Python callback that only appends (data, perf_counter_ns())
      to a bounded deque (`capacity`, oldest dropped when full): atomic, no lock, never blocks once
      it runs. Right for ALSA, CoreMIDI and WinMM, whose callback threads may wait for the GIL.
    - queue (JACK): rtmidi keeps messages in its own C++ queue (`capacity` messages) and `poll()`
      drains it. JACK calls rtmidi's input code in its process thread, realtime when the server
      is; a Python callback there would have to take the GIL, and a thread that holds it (numba
      code without nogil, a C extension that keeps it) would stall JACK's process thread for as
      long. With the queue no Python runs there at all.
      Stamps: the last message of a batch gets the poll time, earlier ones are back-dated by the
      deltas rtmidi measured in the process thread, clamped between the previous batch and now, so
      a stamp is late by at most the time between two polls: poll often (<= 1 ms).
    """

    kind, what = "in", "input"

    def __init__(self, name: str = DEFAULT_IN, *, api: str | None = None, connect: str | None = None,
                 client_name: str = CLIENT_NAME, capacity: int = 8192, callback: bool | None = None):
        self._port = None
        api = api or auto_api()
        self.uses_callback = (api != "jack") if callback is None else bool(callback)
        self._queue: collections.deque = collections.deque(maxlen=capacity)
        self._last_ns = 0  # queue mode: the latest stamp handed out
        self._lock = threading.Lock()  # queue mode: poll() and close() from different threads
        self._guard = None  # JACK: the SysEx guard's MidiOut (see SYSEX_GUARD_S)
        self._guard_due_ns = 0
        guard_sees = _open_rtmidi("out", api, client_name) if api == "jack" else None
        try:
            before = set(guard_sees.get_ports()) if guard_sees else set()
            port = self._open(name, api, connect, client_name, queue_size_limit=capacity)
        except BaseException:
            if guard_sees is not None:
                guard_sees.delete()
            raise
        port.ignore_types(sysex=True, timing=False, active_sense=True)
        self.full_name = None  # JACK: our port's name in the graph ('client:port'), when known
        if guard_sees is not None:
            self._guard, self.full_name = self._connect_guard(guard_sees, before, name)
        if self.uses_callback:
            append = self._queue.append
            now = time.perf_counter_ns

            def on_message(event, _data=None):
                # runs on rtmidi's thread: stamp and queue, nothing else
                append((event[0], now()))

            self._on_message = on_message
            port.set_callback(on_message)
        self._port = port

    @staticmethod
    def _connect_guard(guard, before: set, name: str):
        """Connect the guard to the port just opened (the one new port of our name): (guard, our
        port's full name), or (None, None) when that port cannot be told apart."""
        names = list(guard.get_ports())
        ours = [i for i, n in enumerate(names) if n not in before and n.split(":", 1)[-1] == name]
        if len(ours) != 1:
            guard.delete()
            return None, None
        with _no_jack_autostart():
            guard.open_port(ours[0], "sysex guard")
        return guard, names[ours[0]]

    def _guard_input(self, now_ns: int) -> None:
        """Nothing came for a while: end any unterminated SysEx (see SYSEX_GUARD_S)."""
        if now_ns >= self._guard_due_ns:
            self._guard_due_ns = now_ns + int(SYSEX_GUARD_S * 1e9)
            self._guard.send_message(_END_OF_SYSEX)

    @property
    def closed(self) -> bool:
        return self._port is None

    def poll(self) -> list[tuple[bytes, int]]:
        """Every message received since the last poll, oldest first, as (bytes, perf_counter_ns at arrival)."""
        if not self.uses_callback:
            return self._poll_rtmidi_queue()
        out = []
        pop = self._queue.popleft
        while True:
            try:
                data, t_ns = pop()
            except IndexError:
                break
            data = bytes(data)
            if data != _END_OF_SYSEX:
                out.append((data, t_ns))
        if self._guard is not None:
            self._after_poll(bool(out))
        return out

    def _after_poll(self, got_something: bool) -> None:
        now = time.perf_counter_ns()
        if got_something:
            self._guard_due_ns = now + int(SYSEX_GUARD_S * 1e9)
        else:
            with self._lock:
                if self._port is not None:
                    self._guard_input(now)

    def _poll_rtmidi_queue(self) -> list[tuple[bytes, int]]:
        batch = []
        with self._lock:  # never get_message() on a port that close() is deleting
            port = self._port
            if port is None:
                return []
            get = port.get_message
            while True:
                item = get()
                if item is None:
                    break
                batch.append(item)
            if not batch:
                if self._guard is not None:
                    self._guard_input(time.perf_counter_ns())
                return []
        now = time.perf_counter_ns()
        self._guard_due_ns = now + int(SYSEX_GUARD_S * 1e9)
        floor = self._last_ns
        out = [None] * len(batch)
        t = now
        for k in range(len(batch) - 1, -1, -1):
            data, delta_s = batch[k]
            out[k] = (bytes(data), max(t, floor))
            t -= int(delta_s * 1e9)
        self._last_ns = now
        return [item for item in out if item[0] != _END_OF_SYSEX]

    def close(self) -> None:
        """Close the port (safe to call twice); what was not polled yet is dropped."""
        with self._lock:
            port, self._port = self._port, None
            guard, self._guard = self._guard, None
        if port is None:
            return
        try:
            if self.uses_callback:
                port.cancel_callback()
            if self.api == "jack":
                time.sleep(JACK_SETTLE_S)
            if guard is not None:
                guard.close_port()
            port.close_port()
        finally:
            if guard is not None:
                guard.delete()
            port.delete()
            self._queue.clear()


# length of each short message, by status byte (system messages) or by high nibble (channel messages)
_CHANNEL_LEN = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
_SYSTEM_LEN = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1, 0xFE: 1, 0xFF: 1}


def check_message(message) -> bytes:
    """`message` (bytes, a sequence of ints, or anything with .bytes() like mido.Message) as bytes,
    if it is one complete short MIDI message; ValueError otherwise (SysEx is not a short message)."""
    if hasattr(message, "bytes") and callable(message.bytes):
        message = message.bytes()
    if isinstance(message, (int, str)):  # bytes(3) would be three zero bytes
        raise ValueError(f"not MIDI bytes: {message!r}")
    try:
        data = bytes(message)
    except (TypeError, ValueError) as error:
        raise ValueError(f"not MIDI bytes: {message!r} ({error})") from None
    if not data:
        raise ValueError("empty MIDI message")
    status = data[0]
    if status < 0x80:
        raise ValueError(f"MIDI message must start with a status byte, not {status:#04x}")
    want = _CHANNEL_LEN.get(status & 0xF0) if status < 0xF0 else _SYSTEM_LEN.get(status)
    if want is None:
        raise ValueError(f"status {status:#04x} is not a short MIDI message (SysEx or undefined)")
    if len(data) != want:
        raise ValueError(f"status {status:#04x} takes {want} bytes, got {len(data)}: {data.hex(' ')}")
    if any(b > 0x7F for b in data[1:]):
        raise ValueError(f"MIDI data bytes must be < 128: {data.hex(' ')}")
    return data


class MidiOutput(_Port):
    """A MIDI output: a virtual port `name` (default 'bachbridge out'), or, with `connect=`, our
    port connected to the existing port whose name contains that text.

    `send()` validates and writes one short message, keeping the one record of what sounds
    (`bridge.sounding.Sounding`: unisons sound once, a note-off ends only its own source's
    note); `release(source)`, `all_notes_off()` and `close()` end what sounds, so nothing is left
    hanging. Meant for one writing thread (the live bridge's worker); the lock only keeps a
    `close()` from another thread from deleting the port under a `send()`, and is never held
    for longer than one write.
    """

    kind, what = "out", "output"

    def __init__(self, name: str = DEFAULT_OUT, *, api: str | None = None, connect: str | None = None,
                 client_name: str = CLIENT_NAME):
        self._lock = threading.Lock()
        self._port = None
        self.notes = Sounding(self._write)
        self._port = self._open(name, api, connect, client_name)

    @property
    def closed(self) -> bool:
        return self._port is None

    def sounding(self, source: str | None = None) -> dict[tuple[int, int], int]:
        """{(channel 0-15, note): note-ons held} (a copy), of every source or of one."""
        with self._lock:
            return self.notes.sounding(source)

    def send(self, message, source: str = "") -> bool:
        """Send one short MIDI message on behalf of `source`; True when bytes went out (see
        Sounding.send). ValueError, and nothing sent, when the port is closed or the message is
        not a valid short MIDI message (see `check_message`)."""
        data = check_message(message)
        with self._lock:
            if self._port is None:
                raise ValueError(f"MIDI output {self.name!r} is closed")
            return self.notes.send(data, source)

    def release(self, source: str = "") -> int:
        """Note-offs for the notes `source` holds; the number sent."""
        with self._lock:
            return 0 if self._port is None else self.notes.release(source)

    def silence(self, keys) -> int:
        """Note-offs once more for those of `keys` that sound no more (see Sounding.silence)."""
        with self._lock:
            return 0 if self._port is None else self.notes.silence(keys)

    def all_notes_off(self, channels=()) -> int:
        """Note-off for every note sounding (once per key), sustain pedal up where it was down,
        then CC 123 (All Notes Off) on every channel sent on and each of `channels` (0-15).
        Returns the number of messages sent."""
        with self._lock:
            return 0 if self._port is None else self.notes.all_notes_off(channels)

    def _write(self, data: bytes) -> None:
        self._port.send_message(data)

    def close(self, channels=()) -> None:
        """All notes off (see `all_notes_off`), then close; safe to call twice."""
        with self._lock:
            port = self._port
            if port is None:
                return
            try:
                self.notes.all_notes_off(channels)
            finally:
                self._port = None
        try:
            if self.api == "jack":
                time.sleep(JACK_SETTLE_S)
            port.close_port()  # rtmidi's JACK backend waits (<= 1 s) for queued bytes to go out
        finally:
            port.delete()
