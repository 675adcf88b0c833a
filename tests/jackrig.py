"""A JACK rig for the tests and the benches: a private JACK server (dummy driver), the stock
programs that stand in for a DAW (jack_midiseq, jack_midi_dump, jack_midi_clock, from Debian's
jackd2 and jack-midi-clock), a python-rtmidi client of our own, CPU load, and the accounting of
answers. Nothing here is part of the product.

    with JackServer(realtime=True) as server:          # asynchronous (no --sync) unless asked
        dump = MidiDump(server, "dump")
        seq = MidiSeq(server, "seq", eighths([67, 69, 71]), loop_frames=36_000)
        server.connect("seq:out", "bachbridge in") ...
        with CpuLoad(2):
            ...
        answers(dump.events())                        # every melody onset and its first harmony

One server per process at a time: libjack (jack2) binds a process to the server of its first
client for as long as any of its clients is open, so a client opened for a second server talks
to the first. `graph()` (and XrunMonitor, through it) closes the in-process client of any other
rig server first; python-rtmidi clients (Outside) are per test and must be closed by it.

Server names: JACK keeps at most 8 servers in its registry and frees the entry of a server that
died only when a server of the same name starts again, so a rig that gave every server a unique
name would, after 8 unclean deaths, leave a machine on which no JACK server starts. The rig uses
the names bachbridge-rig-0 .. -7, the first one free.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RATE = 48_000
PERIOD = 64
SERVER_SLOTS = 8
START_TIMEOUT_S = 10.0
NOTE_ON, NOTE_OFF, CC = 0x90, 0x80, 0xB0

STOCK_PROGRAMS = ("jackd", "jack_midiseq", "jack_midi_dump", "jack_midi_clock")


def missing_programs(names=STOCK_PROGRAMS) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


# ---------------------------------------------------------------- the server

class JackServer:
    """jackd -d dummy under a rig name, exported as JACK_DEFAULT_SERVER (and JACK_NO_START_SERVER=1)
    to this process and the programs it starts. `realtime`: ask jackd for realtime scheduling
    (`realtime_granted` says whether its threads got it); `sync`: --sync (the server waits for
    every client each cycle). `kill()` ends it the hard way; `start()` again brings it back."""

    def __init__(self, *, realtime: bool = False, sync: bool = False, period: int = PERIOD, rate: int = RATE,
                 log: Path | None = None):
        self.realtime, self.sync, self.period, self.rate = realtime, sync, period, rate
        self.log_path = log
        self.name: str | None = None
        self.proc: subprocess.Popen | None = None
        self._graph = None
        self._saved_env = None

    @property
    def args(self) -> list[str]:
        rt = ["-R"] if self.realtime else ["--no-realtime"]
        return [*rt, *(["--sync"] if self.sync else []), "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]

    def start(self) -> "JackServer":
        jackd = shutil.which("jackd")
        if jackd is None:
            raise RuntimeError("jackd is not installed (Debian: apt-get install jackd2; `make test` does it)")
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
        names = [self.name] if self.name else [f"bachbridge-rig-{k}" for k in range(SERVER_SLOTS)]
        problems = []
        for name in names:
            if self.name is None and _accepts_clients(name):
                continue  # someone else's server runs under this name
            log = open(self.log_path or os.devnull, "ab")
            proc = subprocess.Popen([jackd, "-n", name, *self.args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=_env(name), preexec_fn=_die_with_parent)
            log.close()
            if self._wait_accepting(proc, name):
                self.name, self.proc = name, proc
                os.environ["JACK_DEFAULT_SERVER"] = name
                os.environ["JACK_NO_START_SERVER"] = "1"
                return self
            problems.append(f"{name}: exit status {proc.poll()}")
            _end(proc)
        raise RuntimeError("no JACK server would start (" + "; ".join(problems) + ")")

    @staticmethod
    def _wait_accepting(proc: subprocess.Popen, name: str) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False  # e.g. a server of that name started meanwhile elsewhere
            if _accepts_clients(name):
                time.sleep(0.2)
                return proc.poll() is None  # ours answered, not another one of that name
            time.sleep(0.05)
        return False

    @property
    def realtime_granted(self) -> bool:
        """Whether any of jackd's threads runs with realtime scheduling."""
        if self.proc is None:
            return False
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                if os.sched_getscheduler(int(task.name)) in (os.SCHED_FIFO, os.SCHED_RR):
                    return True
            except OSError:
                pass
        return False

    def graph(self):
        """A passive client on this server (bridge.jackgraph.JackGraph), reopened after a restart;
        the in-process client of any other rig server is closed first (see the module's note)."""
        from bridge.jackgraph import JackGraph

        global _graph_owner
        if _graph_owner is not None and _graph_owner is not self:
            _graph_owner._close_graph()
        if self._graph is None or not self._graph.alive():
            self._graph = JackGraph("rig")
        _graph_owner = self
        return self._graph

    def _close_graph(self) -> None:
        global _graph_owner
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        if _graph_owner is self:
            _graph_owner = None

    def port(self, pattern: str, timeout: float = 10.0, **kind) -> str:
        """The full name of the one port matching `pattern`: a regular expression, a full name
        ('client:port'), or a port's name after the colon; waiting for it to appear."""
        if any(c in pattern for c in "^$\\[("):
            regex = pattern
        elif ":" in pattern:
            regex = f"^{re.escape(pattern)}$"
        else:
            regex = f":{re.escape(pattern)}$"
        deadline = time.monotonic() + timeout
        while True:
            found = self.graph().ports(regex, **kind)
            if len(found) == 1:
                return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {pattern!r}: found {found}")
            time.sleep(0.02)

    def connect(self, source: str, destination: str) -> None:
        """Connect two ports, given by full name or by port name (see `port`). A port shows up
        before its program has activated its client, and JACK refuses to connect it until then:
        tried again for a few seconds."""
        from bridge.jackgraph import JackGraphError

        source, destination = self.port(source, outputs=True), self.port(destination, inputs=True)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return self.graph().connect(source, destination)
            except JackGraphError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        """The server dies (SIGKILL): its clients are left without it."""
        if self._graph is not None:
            self._graph = None  # a client of a dead server is only forgotten (see JackGraph.close)
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        self._close_graph()
        if self.proc is not None:
            _end(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        for key, value in (self._saved_env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


_graph_owner: JackServer | None = None   # the rig server this process's libjack is bound to


def _accepts_clients(server: str) -> bool:
    try:
        return subprocess.run(["jack_lsp"], env=_env(server), capture_output=True, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:  # a loaded machine: not yet
        return False


def _die_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM when the thread that started it ends, so that a
    test run killed outright leaves no server or stock program behind. (The thread, not the
    process: start programs from a thread that lives as long as they should, the main one.)"""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _env(server: str) -> dict:
    return dict(os.environ, JACK_DEFAULT_SERVER=server, JACK_NO_START_SERVER="1")


def _end(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# ---------------------------------------------------------------- a thread that keeps the GIL

def gil_block(milliseconds: float):
    """A call that burns a core for about `milliseconds` of CPU without letting go of the GIL
    (numba code without nogil, as a C extension that keeps it), calibrated on the thread's CPU time, so
    that it lasts at least that long however busy the machine (a wall-clock calibration is off
    by the share of the core that others took meanwhile)."""
    from numba import njit

    @njit(nogil=False)
    def spin(n):
        x = 0.0
        for i in range(n):
            x = x * 0.999999 + i
        return x

    spin(10)   # compiled
    n = 1_000_000
    while True:
        started = time.thread_time()
        spin(n)
        took = time.thread_time() - started
        if took >= 0.05:
            break
        n *= 4
    n = max(1, int(n * milliseconds / 1e3 / took))
    return lambda: spin(n)


# ---------------------------------------------------------------- stock programs

class _Program:
    """A stock JACK program run as a subprocess, ended on close()."""

    def __init__(self, server: JackServer, command: list[str], ready_port: str, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL):
        self.server = server
        self.proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                     env=_env(server.name), preexec_fn=_die_with_parent)
        self.port = server.port(ready_port)

    def kill(self) -> None:
        """Dies mid-whatever (SIGKILL), as a crashing DAW does."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        _end(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def eighths(pitches: list[int], eighth_frames: int = 12_000, length: float = 11 / 12) -> list[tuple[int, int, int]]:
    """Notes for MidiSeq: one pitch each 8th (12,000 frames: 120 bpm at 48 kHz), held `length` of it."""
    return [(k * eighth_frames, pitch, int(eighth_frames * length)) for k, pitch in enumerate(pitches)]


class MidiSeq(_Program):
    """jack_midiseq: loops `notes` [(start frame, pitch, length in frames)] every `loop_frames`."""

    def __init__(self, server: JackServer, name: str, notes: list[tuple[int, int, int]], loop_frames: int):
        args = [str(x) for start, pitch, length in notes for x in (start, pitch, length)]
        super().__init__(server, ["jack_midiseq", name, str(loop_frames), *args], f"^{re.escape(name)}:out$")


class MidiDump(_Program):
    """jack_midi_dump -a: everything arriving at its input, as (frame, bytes). Its frame count
    advances only with the cycles it ran, so a cycle it missed shows as a jump. `start_frame` is
    JACK's frame time when it started counting (to a few periods): its frame f happened at about
    JACK frame start_frame + f."""

    LINE = re.compile(r"^\s*(\d+):((?: [0-9a-f]{2})+)")

    def __init__(self, server: JackServer, name: str = "dump"):
        self._lines: list[str] = []
        self.complaints: list[str] = []   # what it said on stderr (e.g. its ring buffer overflowed)
        super().__init__(server, ["jack_midi_dump", "-a", name], f"^{re.escape(name)}:input$",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.start_frame = server.graph().frame_time()
        for stream, into in ((self.proc.stdout, self._lines), (self.proc.stderr, self.complaints)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream, into: list) -> None:
        for line in iter(stream.readline, b""):
            into.append(line.decode("ascii", "replace"))

    def events(self) -> list[tuple[int, bytes]]:
        out = []
        for line in list(self._lines):
            match = self.LINE.match(line)
            if match:
                out.append((int(match.group(1)), bytes(int(x, 16) for x in match.group(2).split())))
        return out


class MidiClock(_Program):
    """jack_midi_clock: MIDI clock at `bpm` while JACK's transport rolls (start/stop it with
    `server.graph().transport(...)`); Start, Stop and Continue as the transport moves."""

    def __init__(self, server: JackServer, bpm: float):
        super().__init__(server, ["jack_midi_clock", "-b", f"{bpm:g}", "-B"], r"^jack_midi_clock:mclk_out$")


class XrunMonitor:
    """The cycles the JACK server reports as xruns (some client, or the server itself, late), as
    JACK frame times: a client of ours, activated, whose xrun callback (libjack's notification
    thread, never the process thread) notes the time."""

    def __init__(self, server: JackServer, name: str = "xruns"):
        import ctypes

        from bridge.jackgraph import _libjack

        server.graph()   # binds this process's libjack to `server` (see the module's note)
        lib = _libjack()
        lib.jack_set_xrun_callback.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.jack_activate.argtypes = [ctypes.c_void_p]
        lib.jack_deactivate.argtypes = [ctypes.c_void_p]
        status = ctypes.c_int(0)
        self._lib = lib
        self._client = lib.jack_client_open(name.encode(), 0x01, ctypes.byref(status))
        if not self._client:
            raise RuntimeError(f"cannot open the xrun monitor (status {status.value:#x})")
        self.frames: list[int] = []   # JACK frame time of each xrun
        self.times_ns: list[int] = []  # ... and time.perf_counter_ns() when it was reported
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)

        def on_xrun(_arg):
            self.frames.append(int(lib.jack_frame_time(self._client)))
            self.times_ns.append(time.perf_counter_ns())
            return 0

        self._callback = callback_type(on_xrun)  # kept: libjack holds only the pointer
        lib.jack_set_xrun_callback(self._client, ctypes.cast(self._callback, ctypes.c_void_p), None)
        lib.jack_activate(self._client)

    def close(self, server_died: bool = False) -> None:
        """Close the client; after the server died it is only forgotten (closing it would wait
        on a socket nobody answers)."""
        if self._client and not server_died:
            self._lib.jack_deactivate(self._client)
            self._lib.jack_client_close(self._client)
        self._client = None


# ---------------------------------------------------------------- our own client, and load

class Outside:
    """A python-rtmidi JACK client (the DAW, as our own code): sends into ports, receives from
    them. Its inputs are drained by a thread polling rtmidi's queue every 0.2 ms (no Python in
    JACK's process thread), so a receive stamp is late by up to ~0.2 ms."""

    def __init__(self, realtime: bool = False):
        self.clients = []
        self.inputs = []
        self.received: list[tuple[bytes, int]] = []
        self.realtime = realtime   # drain in a realtime thread (priority 1), as a DAW's MIDI thread runs
        self._stop = threading.Event()
        self._thread = None

    def sender(self, target: str | None = None, *, virtual: str | None = None):
        import rtmidi

        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="outside")
        self.clients.append(out)
        if virtual:
            out.open_virtual_port(virtual)
        else:
            out.open_port(self._index(out.get_ports(), target), f"to {target}")
            time.sleep(0.02)  # a brand-new connection may miss the next cycle's events
        return out

    def receiver(self, source: str | None = None, *, virtual: str | None = None):
        import rtmidi

        inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="outside", queue_size_limit=4096)
        self.clients.append(inp)
        inp.ignore_types(sysex=False, timing=False, active_sense=False)
        if virtual:
            inp.open_virtual_port(virtual)
        else:
            inp.open_port(self._index(inp.get_ports(), source), f"from {source}")
            time.sleep(0.02)
        self.inputs.append(inp)
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()
        return inp

    def _drain(self):
        if self.realtime:
            try:
                os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(1))
            except (OSError, AttributeError):
                pass
        while not self._stop.is_set():
            for inp in list(self.inputs):
                while (item := inp.get_message()) is not None:
                    self.received.append((bytes(item[0]), time.perf_counter_ns()))
            time.sleep(0.0002)

    @staticmethod
    def _index(names, port):
        hits = [i for i, name in enumerate(names) if name.split(":", 1)[-1] == port]
        assert len(hits) == 1, f"{port!r} not (uniquely) among {names}"
        return hits[0]

    def messages(self):
        return [m for m, _ in list(self.received)]

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for client in self.clients:
            time.sleep(0.02)  # see bridge.ports.JACK_SETTLE_S: no unregistering mid-notification
            client.close_port()
            client.delete()


class CpuLoad:
    """`count` processes that burn a core each (a DAW rendering, a build, a browser), at `nice`."""

    def __init__(self, count: int = 2, nice: int = 0):
        self.count, self.nice = count, nice
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        burn = "import os; os.nice(%d)\nwhile True: pass" % self.nice
        self.procs = [subprocess.Popen([sys.executable, "-c", burn], preexec_fn=_die_with_parent)
                      for _ in range(self.count)]
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
        return False


# ---------------------------------------------------------------- the accounting

@dataclass
class Answers:
    onsets: int                  # melody note-ons that arrived
    answered: int                # ... followed by a harmony note-on before the next melody note-on
    lost: list[int]              # indices of the onsets with no harmony note-on
    latencies: list[float]       # ms (JACK frames at `rate`) from each answered onset to its first harmony
    hanging: dict                # {(channel, pitch): note-ons with no note-off} at the end
    listener_missed: list[int]   # lost onsets in whose span the listener itself missed JACK cycles
    at_xruns: list[int]          # lost onsets in whose span the server reported an xrun

    @property
    def lost_by_sender(self) -> list[int]:
        """Lost onsets that JACK cannot be blamed for: no xrun in their span, and the listener
        ran every cycle of it."""
        return [n for n in self.lost if n not in self.listener_missed and n not in self.at_xruns]

    def line(self) -> str:
        import numpy as np

        lat = np.asarray(self.latencies)
        figures = f", p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms" if len(lat) else ""
        blamed = {n for n in self.lost if n in self.listener_missed or n in self.at_xruns}
        missed = f" ({len(blamed)} at JACK xruns)" if blamed else ""
        return (f"{self.answered}/{self.onsets} onsets answered, {len(self.lost)} lost{missed}{figures}, "
                f"{sum(self.hanging.values())} notes hanging")


def answers(events: list[tuple[int, bytes]], melody_channel: int = 0, rate: int = RATE,
            onset_grid: int | None = None, xruns: list[int] = ()) -> Answers:
    """From what a listener got (frame, bytes), in order: each melody note-on (on `melody_channel`)
    and whether a harmony note-on (any other channel) came after it (or at its very frame),
    before the next. An onset
    played legato (the melody note before it still held) may keep the harmony that sounds: it
    counts as answered when harmony sounds on at it.

    `onset_grid`: the melody's onsets lie on this grid of frames (jack_midiseq's). jack_midi_dump
    counts only the cycles it ran, so a span between two onsets that is not a whole number of
    grid steps long shows that the listener missed (or ran twice) a cycle in it, and what was
    sent then was lost by the listener: such lost onsets are listed in `listener_missed`.
    `xruns`: the frames (on the listener's count: XrunMonitor's JACK frame times minus
    MidiDump.start_frame) of the cycles the server reported as xruns; a lost onset with one
    between it and the next onset (give or take a few periods) is listed in `at_xruns`."""
    lost, latencies = [], []
    onsets = [k for k, (_, m) in enumerate(events) if _is_on(m) and m[0] & 0x0F == melody_channel]
    melody_held: set[int] = set()
    harmony: dict = {}
    cursor = 0
    for n, k in enumerate(onsets):
        for _, m in events[cursor:k]:
            _follow(m, melody_channel, melody_held, harmony)
        cursor = k
        legato_under_harmony = bool(melody_held) and any(harmony.values())
        end = onsets[n + 1] if n + 1 < len(onsets) else len(events)
        # the listener merges its inputs: an answer that reached it in the cycle the onset did
        # (the onset itself late) may be listed before the onset, at the same frame
        begin = k
        while begin > (onsets[n - 1] + 1 if n else 0) and events[begin - 1][0] == events[k][0]:
            begin -= 1
        first = next((events[j][0] for j in range(begin, end)
                      if j != k and _is_on(events[j][1]) and events[j][1][0] & 0x0F != melody_channel), None)
        if first is not None:
            latencies.append((first - events[k][0]) * 1000 / rate)
        elif not legato_under_harmony:
            lost.append(n)
    missed = []
    if onset_grid:
        frames = [events[k][0] for k in onsets]
        uneven = {n for n in range(len(frames) - 1) if (frames[n + 1] - frames[n]) % onset_grid}  # span n -> n+1
        missed = [n for n in lost if n in uneven or n - 1 in uneven]
    at_xruns = [n for n in lost
                if xrun_between(xruns, events[onsets[n]][0],
                                events[onsets[n + 1]][0] if n + 1 < len(onsets) else events[-1][0])]
    return Answers(len(onsets), len(onsets) - len(lost), lost, latencies, hanging([m for _, m in events]),
                   missed, at_xruns)


def xrun_between(xruns: list[int], first: int, last: int) -> bool:
    """Did the server report an xrun from frame `first` to `last` of a listener's count (xruns
    as in answers()), give or take 8 periods: the listener's count lags JACK's by the cycles it
    missed, and libjack reports an xrun a little after its cycle."""
    margin = 8 * PERIOD
    return any(first - margin <= x <= last + margin for x in xruns)


def _follow(m: bytes, melody_channel: int, melody_held: set, harmony: dict) -> None:
    """Keep up with what sounds: the melody's held pitches, the harmony's keys."""
    if len(m) != 3 or m[0] & 0xE0 != NOTE_OFF:
        return
    on = _is_on(m)
    if m[0] & 0x0F == melody_channel:
        (melody_held.add if on else melody_held.discard)(m[1])
    else:
        key = (m[0] & 0x0F, m[1])
        harmony[key] = on


def hanging(messages) -> dict:
    """{(channel, pitch): note-ons not followed by a note-off, or by All Notes Off (CC 123) or
    All Sound Off (CC 120) on their channel}: what a synth would leave sounding."""
    count: dict = {}
    for m in messages:
        if len(m) == 3 and m[0] & 0xF0 == CC and m[1] in (120, 123):
            count = {key: n for key, n in count.items() if key[0] != m[0] & 0x0F}
        elif len(m) == 3 and m[0] & 0xE0 == NOTE_OFF:
            key = (m[0] & 0x0F, m[1])
            count[key] = count.get(key, 0) + (1 if _is_on(m) else -1 if count.get(key, 0) > 0 else 0)
    return {key: n for key, n in count.items() if n}


def listener_missed_spans(events, grid: int, channel: int = 0) -> list[tuple[int, int]]:
    """Spans (from frame, to frame) of a listener's (frame, bytes) events in which it missed
    cycles: the sequencer on `channel` puts its notes' ons and offs on a grid of `grid` frames, and
    jack_midi_dump counts only the cycles it ran, so two consecutive events of it that are not a
    whole number of grid steps apart have lost cycles (and what came in them) between them."""
    frames = [f for f, m in events if len(m) == 3 and m[0] & 0xE0 == NOTE_OFF and m[0] & 0x0F == channel]
    return [(a, b) for a, b in zip(frames, frames[1:]) if (b - a) % grid]


def hanging_not_missed(events, grid: int, channel: int = 0) -> dict:
    """`hanging` of (frame, bytes) events, less the notes whose end may have come in a cycle the
    listener missed (a span of `listener_missed_spans` ending after the note began): those were
    lost by JACK, not left sounding by the sender."""
    spans = listener_missed_spans(events, grid, channel)
    began: dict = {}
    for frame, m in events:
        if _is_on(m):
            began.setdefault((m[0] & 0x0F, m[1]), []).append(frame)
    return {key: n for key, n in hanging([m for _, m in events]).items()
            if not any(end > min(began[key]) for _, end in spans)}


def harmony_hanging(events, grid: int | None = None) -> dict:
    """`hanging` for the harmony's channels (2..16) of (frame, bytes) events: a sequencer ended
    mid-note may leave its own on channel 1. With the sequencer's `grid`, `hanging_not_missed`."""
    left = hanging_not_missed(events, grid) if grid else hanging([m for _, m in events])
    return {key: n for key, n in left.items() if key[0] != 0}


def wait_for_harmony_release(dump: "MidiDump", timeout: float = 2.0) -> None:
    """jack_midi_dump prints what came in the last cycles a moment after it came: wait (up to
    `timeout`) for the harmony's last note-offs to show before reading it (notes that really hang
    still show as hanging after)."""
    deadline = time.monotonic() + timeout
    while harmony_hanging(dump.events()) and time.monotonic() < deadline:
        time.sleep(0.01)


def _is_on(m: bytes) -> bool:
    return len(m) == 3 and m[0] & 0xF0 == NOTE_ON and m[2] > 0
