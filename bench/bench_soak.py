"""The live soak: a long, hostile evening of playing through a real JACK server.

    python bench/bench_soak.py [--minutes 30] [--engines coconet-live,rnnrbm] [--out runs/bench-soak.json]

Everything runs as a user's machine would run it, each part in its own process:
- JACK: jackd, dummy driver, 48 kHz, 64-frame period, asynchronous (no --sync), with realtime
  scheduling when it can get it (the report says whether it did: without it, a client that misses
  a period on this 2-core machine drops that period's events whatever it runs, so figures from
  such a server measure the machine, not the bridge).
- The bridge: `bench/soak_players.py --bridge`, a `bridge.live.Bridge` on JACK (note mode to
  begin with, speculation on, clock `auto`, internal tempo 160, phrase lookahead 2 beats, harmony
  on MIDI channels 2-4, the melody's echo on channel 5). It takes one knob command per line on
  its stdin (JSON) and answers each on stdout once the bridge has it; on request it reports
  `stats.snapshot()`.
- The DAW: `bench/soak_players.py --daw`, a python-rtmidi client with three ports: `melody`
  (16th notes at 160 bpm on channel 1, each held 3/4 of a 16th, 32 pitches of a chorale-like
  line over and over), `junk` (every 11th note, 35 ms after its onset, a burst of SysEx, an
  unterminated SysEx, a clock flood, undefined and truncated messages, data bytes with no
  status, out-of-range note data and stray channel messages; no note-on) and `marks` (control
  changes on channel 16 that say in the record when a knob was turned, see below).
- `jack_midi_clock` (Debian's jack-midi-clock) sends the MIDI clock at 160 bpm while JACK's
  transport rolls, and Stop and Continue when this script stops it (every 4 bars, for a beat)
  and starts it again.
- `jack_midi_dump -a` listens to the DAW's melody and marks, to the clock and to 'bachbridge
  out': its record (frame, bytes) is what the figures are counted from, by a program nobody
  here wrote. It is started again with each life of the server.

The evening: every second a knob turns: temperature mostly, the mode (note <-> phrase) and the
engine (the first <-> the second of --engines) twice each in every 10 seconds. At 25% of the
run the DAW is killed (SIGKILL) while a note is held, in note mode, and at 45% again in phrase
mode; 2 s later it starts again and is connected again (no mode or engine change and no Stop
from just before a kill until a second after the DAW is back: they would release what the kill
must be seen to release). At 60% the JACK server is killed (SIGKILL) and started again a
second later: the bridge must open its ports again by itself; this script then connects
everything again, as a DAW's connection manager would, and the DAW plays on. At the end the DAW stops (its last note-off sent), the record goes on 2 s more, and the
bridge is asked for its stats before it is closed (closing sends note-offs to everything).
A knob turn or Stop that a kill made more than half a second late is left out, not made up for.

How answers are counted, from the record, per melody onset (a note-on on channel 1; the code is
bench/soak_record.py):
- the state of the knobs at its frame comes from the marks: the DAW sends "state" when it
  starts, "begin" before the bridge is told of a new mode or engine and "done" once the bridge
  has it (a mark the listener missed is put back where this script sent it, placed from the
  nearest one it heard); during a change (between the two) the onset's echo tells which mode
  took it (at once: note mode);
- note mode: answered when a harmony note-on (channels 2-4) follows it before the next onset;
  its latency is the frames between the two (through JACK, both stamped by jack_midi_dump); or
  when harmony sounds on from the onset before (held over: the melody plays detached, so that
  happens when the bridge missed the note-off between, and a voice that keeps its pitch is held,
  not struck again; counted apart);
- phrase mode: answered when its echo (channel 5, same pitch and velocity) comes about one
  lookahead later (2 beats at 160 bpm, +-150 ms: a JACK cycle that ran late, e.g. while jackd
  removes a dead client, shifts a run of answers in frames, the bridge timing them by the system
  clock) with a harmony strike of the same velocity (the DAW's velocities go round 5 values, so
  answers are told apart by them) or with harmony held over under it; their timing errors are
  their distances from the lookahead, in frames, as heard;
- not answered, and excused, each reason counted apart: in phrase mode when a release-worthy
  event (a mode or engine change, Stop) came between the onset and its due time (the bridge
  drops what phrase mode had scheduled and not yet played: by design); when the server was
  killed before the answer was due; when the listener itself missed a JACK cycle meanwhile (its
  frame count advances only by the cycles it ran, and jack_midi_clock's clocks are exactly 750
  frames apart while the transport rolls, so a gap of another size shows one); and, for onsets
  the bridge never echoed either, as many as it never took in (the DAW's count of onsets sent,
  less the bridge's own notes_in: its input client missed that JACK cycle);
- every other onset with no answer is LOST. Every onset in the record was sent while the DAW,
  the bridge and the dump were connected (the DAW plays only once all are), so that is every
  onset that reached the bridge while its ports were up and connected. Each lost onset says
  whether the bridge itself played it bare (its monitor, what a window draws, shows no harmony
  for it: the bridge's choice) or sent harmony that the record lacks (lost on the way out). One
  not played bare with an xrun reported between it and its due time (the server's xrun
  callback, in an XrunMonitor of our own) is excused apart: a client late for that cycle lost
  it, JACK's doing.
Hanging notes: note-ons with no note-off in the record of the last life of the server, on any
channel, 2 s after the DAW stopped (before the bridge is closed). After each kill of the DAW
(mid-note: its note-on was 15 ms before the mark that says so, 10 ms before the kill), nothing
of the bridge's (channels 2-5) begun in the second before the kill or after it may sound 1.5 s
later, in the record, nor in the bridge's own view (its monitor: what it sounded, when it had
ended it all); the time from the kill's mark to the record's last note-off is reported.

Reported: what jackd's log says of missed cycles, per client; onsets sent, taken in by the
bridge, in the record; answered, lost (bar: 0), excused by reason; hanging notes at the end
(bar: 0; a note-off the listener may have missed in a cycle it missed is reported apart);
per slice of --slice-minutes (default 5) of run time: note mode's p50/p99/max latency (drift
bar: the last slice's p99 at most 1 ms or 25% above the first's, whichever is more) and phrase
mode's p99 timing errors, with the bridge's own p50/p99 (its last 512 onsets) at the slice's
end; the resident memory (VmRSS) of the bridge process and of its speculator process at start
(one minute into the run, or a quarter of it when shorter: by then every engine and mode has
played) and at the end (bar: growth <= 5%); the server restart: whether the bridge opened its
ports again by itself (stats.ports_reopened), the time from the server accepting clients again
to both of the bridge's ports being back, and the gap in playing; the releases after the DAW's
kills; the bridge's counters (event_errors must stay 0). Exit status 1 when a bar is missed.
With --server-signal TERM the server is stopped cleanly instead of killed.

tests/test_soak.py runs the same evening for 30 s (`run_soak`).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import jackrig  # noqa: E402  (tests/jackrig.py: the JACK rig shared by tests and benches)
from soak_record import (  # noqa: E402  (the record and its accounting)
    RATE, PERIOD, BPM, MARK_STATE, MARK_BEGIN, MARK_DONE, MARK_KILL, KILL_CHECK_S, KILL_LOOKBACK_S,
    KILL_AFTER_ONSET_S, State, Life, bridge_view, kill_check)
from soak_players import SIXTEENTH_S  # noqa: E402  (the two players, each a process of its own)
from soak_report import Run, SoakReport, print_report, reaccount, report_of  # noqa: E402  (the counting)

KNOB_CYCLE = "TETTMTTETM"              # each second's knob: Temperature, Engine, Mode
TEMPERATURES = [0.3, 0.7, 1.0, 0.5, 0.0, 0.9, 0.2, 1.3]
STOP_EVERY_S = 4 * 4 * 60.0 / BPM      # every 4 bars ...
STOP_FOR_S = 60.0 / BPM                # ... the transport stops for a beat
STATS_EVERY_S = 10.0
OVERDUE_S = 0.5                        # a knob turn or Stop this late (after a kill) is left out
DAW_BACK_AFTER_S = 2.0                 # the DAW starts again this long after its kill
SERVER_DOWN_S = 1.0
PORTS_BACK_TIMEOUT_S = 10.0
END_LISTEN_S = 2.0                     # after the DAW stopped: phrase mode's last answers, then hanging notes
COMMAND_TIMEOUT_S = 20.0


# ---------------------------------------------------------------- the children, from here

PLAYERS = Path(__file__).resolve().parent / "soak_players.py"


class Child:
    """A player's process (bench/soak_players.py), talked to by lines; its stdout read by a thread."""

    def __init__(self, role: str, *args: str, log: Path):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(PLAYERS), role, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        self.last_onset: tuple[int, float] | None = None   # the DAW's: (K, time.monotonic() it was read)
        self.onsets_sent = 0                                # the DAW's: note-ons it sent
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("on "):
                self.last_onset = (int(line.split()[1]), time.monotonic())
                self.onsets_sent += 1
            else:
                self.lines.put(line.rstrip("\n"))

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, timeout: float = COMMAND_TIMEOUT_S) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.on_silence()
            raise RuntimeError(f"{self.proc.args[2]}: no answer in {timeout:g} s (exit status "
                               f"{self.proc.poll()}; see {self.log.name})") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def on_silence(self) -> None:
        """It did not answer in time: what to leave in its log for the report."""

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(5)

    def close(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class BridgeProcess(Child):
    def __init__(self, engines: list[str], log: Path):
        super().__init__("--bridge", ",".join(engines), log=log)
        reply = json.loads(self.expect(120.0))
        self.pid, self.ports_up_s, self.worker_realtime = reply["pid"], reply["ports_up_s"], reply["worker_realtime"]

    def on_silence(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGUSR1)   # every thread's stack into the log (see soak_players.bridge_process)
            time.sleep(0.5)

    def command(self, **command) -> dict:
        self.send(json.dumps(command))
        return json.loads(self.expect())

    def stats(self) -> dict:
        return self.command(stats=True)["stats"]

    def quit(self) -> dict:
        self.send(json.dumps({"quit": True}))
        return json.loads(self.expect())["stats"]

    def speculator_pid(self) -> int | None:
        """The speculator: the bridge's child started by multiprocessing (not its resource tracker)."""
        for pid in _children(self.pid):
            cmdline = _cmdline(pid)
            if "multiprocessing" in cmdline and "resource_tracker" not in cmdline:
                return pid
        return None


class DawProcess(Child):
    def __init__(self, log: Path):
        super().__init__("--daw", log=log)
        if self.expect() != "ready":
            raise RuntimeError("the DAW did not start")

    def mark(self, controller: int, value: int) -> None:
        self.send(f"mark {controller} {value}")
        if self.expect() != "marked":
            raise RuntimeError("the DAW did not mark")

    def stop(self) -> None:
        self.send("stop")
        if self.expect() != "stopped":
            raise RuntimeError("the DAW did not stop")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of a process, KiB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- the JACK server

def own_server(realtime: bool = True, log: Path | None = None) -> jackrig.JackServer:
    """A JackServer under a rig name no other server holds now (picked here from the names with
    no JACK socket, so that the server keeps its name when it is started again after a kill),
    whose own jackd still runs once it answers."""
    from bridge.ports import _jack_socket_present

    problems = []
    for slot in reversed(range(jackrig.SERVER_SLOTS)):
        name = f"bachbridge-rig-{slot}"
        if _jack_socket_present(name):
            continue
        server = jackrig.JackServer(realtime=realtime, log=log)
        server.name = name
        try:
            server.start()
            if _still_ours(server):
                return server
            problems.append(f"{name}: taken meanwhile")
        except Exception as error:   # e.g. jack_lsp timing out on a loaded machine
            problems.append(f"{name}: {error}")
            _end_jackd_children(name)
        server.close()
    raise RuntimeError("no JACK server would start: " + ("; ".join(problems) or "every rig name is in use"))


def _end_jackd_children(name: str) -> None:
    """A jackd of ours left running by a start that failed half-way."""
    for pid in _children(os.getpid()):
        if _cmdline(pid).split()[:3] == [shutil.which("jackd") or "jackd", "-n", name]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _still_ours(server: jackrig.JackServer, settle_s: float = 0.3) -> bool:
    time.sleep(settle_s)
    return server.proc is not None and server.proc.poll() is None


def connect(server: jackrig.JackServer, source: str, destination: str, timeout: float = 10.0) -> None:
    """server.connect, again until it works: a client's port shows before the client is active,
    and JACK refuses to connect ports of an inactive client."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.connect(source, destination)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------- the evening

class Soak:
    """The evening, run by `run()`: see the module docstring."""

    def __init__(self, seconds: float, engines: list[str], workdir: Path, slice_s: float,
                 progress=print, realtime: bool = True, server_signal: str = "KILL",
                 require_realtime: bool = False):
        self.seconds, self.engines, self.workdir, self.slice_s = seconds, engines, workdir, slice_s
        self.progress = progress
        self.realtime = realtime
        self.server_signal = server_signal
        self.require_realtime = require_realtime
        self.server: jackrig.JackServer | None = None
        self.bridge: BridgeProcess | None = None
        self.daw: DawProcess | None = None
        self.dump: jackrig.MidiDump | None = None
        self.xruns: jackrig.XrunMonitor | None = None
        self.clock: jackrig.MidiClock | None = None
        self.lives: list[Life] = []
        self.life_start_s = 0.0
        self.state = State()
        self.temperature_index = 0
        self.samples: list[dict] = []
        self.source_kills: list[dict] = []
        self.restart: dict = {}
        self.t0 = 0.0
        self.quiet_until = 0.0       # no release-worthy change, no Stop, until then (run time)
        self.stopped_at: float | None = None
        self.checked_until, self.checked_life = 0, 0   # the record up to this frame of this life was checked
        self.onsets_sent = 0                           # by every DAW, while connected
        self.marks_sent: list[tuple[int, int, float]] = []   # this life's marks: (controller, value, monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    # ---- setting up and tearing down the DAW side

    def _start_life(self) -> None:
        """After the server (re)started and the bridge's ports are there: the dump, the clock and
        the DAW, connected; the DAW marks the knobs' state and plays."""
        server = self.server
        self.life_start_s = self.now()   # jack_midi_dump -a counts frames from its own start
        self.dump = jackrig.MidiDump(server, "dump")
        self.xruns = jackrig.XrunMonitor(server)
        connect(server, "bachbridge out", r"^dump:input$")
        self.clock = jackrig.MidiClock(server, BPM)
        connect(server, r"^jack_midi_clock:mclk_out$", "bachbridge in")
        connect(server, r"^jack_midi_clock:mclk_out$", r"^dump:input$")
        server.graph().transport(True, 0)
        self._start_daw()

    def _start_daw(self) -> None:
        server = self.server
        self.daw = DawProcess(self.workdir / "daw.log")
        connect(server, "melody", r"^dump:input$")
        connect(server, "marks", r"^dump:input$")
        connect(server, "melody", "bachbridge in")
        connect(server, "junk", "bachbridge in")
        time.sleep(0.05)  # a brand-new connection may miss the next cycle's events
        self.mark(self.daw, MARK_STATE, self.state.code())
        self.daw.send("play")

    def _end_life(self, killed: bool, daw_sent: int | None = None) -> None:
        """Keep what the dump heard in this life; end the DAW side's programs. `daw_sent`: the
        DAW's onsets to count (default: all it sent)."""
        if self.daw is not None:
            self.onsets_sent += self.daw.onsets_sent if daw_sent is None else daw_sent
            self.daw.kill()
            self.daw.close()
            self.daw = None
        for program in (self.clock, self.dump):
            if program is not None:
                program.kill() if killed else program.close()
        xruns = []
        if self.xruns is not None:
            self.xruns.close(server_died=killed)
            xruns = [x - self.dump.start_frame for x in self.xruns.frames]
            self.xruns = None
        if self.dump is not None:
            time.sleep(0.2)  # the dump's reader takes its last lines
            life = Life(self.life_start_s, self.dump.events(), killed, self.marks_sent, len(self.lives), xruns)
            self.marks_sent = []
            self.lives.append(life)
            with open(self.workdir / f"record-{len(self.lives)}.txt", "w") as record:
                record.writelines(f"{frame} {m.hex(' ')}\n" for frame, m in life.events)
        self.dump = self.clock = None

    # ---- what happens during the evening

    def turn_knob(self, second: int) -> None:
        kind = KNOB_CYCLE[second % len(KNOB_CYCLE)]
        if kind != "T" and self.now() < self.quiet_until:
            kind = "T"
        if kind == "T":
            self.temperature_index += 1
            self.bridge.command(temperature=TEMPERATURES[self.temperature_index % len(TEMPERATURES)])
        elif kind == "M":
            self.change(State("phrase" if self.state.mode == "note" else "note", self.state.engine))
        else:
            self.change(State(self.state.mode, (self.state.engine + 1) % len(self.engines)))

    def mark(self, daw: DawProcess, controller: int, value: int) -> None:
        daw.mark(controller, value)
        self.marks_sent.append((controller, value, time.monotonic()))

    def change(self, new: State) -> None:
        """A release-worthy knob change (mode or engine), marked in the record before and after."""
        daw = self.daw if self.daw is not None and self.daw.alive() else None
        if daw is not None:
            self.mark(daw, MARK_BEGIN, new.code())
        if new.mode != self.state.mode:
            self.bridge.command(mode=new.mode)
        if new.engine != self.state.engine:
            self.bridge.command(engine=self.engines[new.engine])
        self.state = new
        if daw is not None:
            self.mark(daw, MARK_DONE, new.code())

    def transport_stop(self) -> None:
        if self.now() < self.quiet_until or self.daw is None:
            return
        self.server.graph().transport(False)
        self.stopped_at = self.now()

    def transport_continue(self) -> None:
        if self.stopped_at is not None:
            self.server.graph().transport(True)
            self.stopped_at = None

    def kill_source(self, mode: str) -> None:
        """Kill the DAW (SIGKILL) while it holds a note, in `mode`; check that nothing of the
        bridge's sounds KILL_CHECK_S later; start the DAW again."""
        if self.state.mode != mode:
            self.change(State(mode, self.state.engine))
        self.quiet_until = self.now() + KILL_CHECK_S + DAW_BACK_AFTER_S + 1.0
        time.sleep(2 * SIXTEENTH_S)   # a few onsets in this mode first
        daw = self.daw
        seen = daw.last_onset
        while daw.last_onset is seen or time.monotonic() - daw.last_onset[1] > 0.005:
            time.sleep(0.0005)        # just after a note-on (it is held 70 ms) ...
        time.sleep(KILL_AFTER_ONSET_S)  # ... and its answer (note mode)
        self.mark(daw, MARK_KILL, 0)
        time.sleep(0.01)              # the mark is out of the DAW's port
        daw.kill()
        self.onsets_sent += daw.onsets_sent
        killed_monotonic = time.monotonic()
        killed_at = self.now()
        daw.close()
        self.daw = None
        time.sleep(KILL_CHECK_S)
        record = self.dump.events()
        check = kill_check(record, self.checked_until if self.checked_life == len(self.lives) else 0)
        self.checked_until, self.checked_life = record[-1][0] + 1, len(self.lives)
        monitor = self.bridge.command(monitor_since=killed_monotonic - KILL_LOOKBACK_S)["monitor"]
        check.update(mode=mode, run_s=round(killed_at, 2), bridge_view=bridge_view(monitor, killed_monotonic))
        self.source_kills.append(check)
        view = check["bridge_view"]
        self.progress(f"  DAW killed mid-note in {mode} mode at {killed_at:.1f} s: the bridge ended all it sounded "
                      f"{view['all_ended_s']} s after (still sounding: {view['still_sounding'] or 'nothing'}); "
                      f"the record's last note-off {check.get('release_s')} s after, still sounding there: "
                      f"{check.get('hanging_after') or 'nothing'}"
                      + (f" (unverifiable, the listener having missed a cycle: {check['unverifiable_after']})"
                         if check.get("unverifiable_after") else ""))
        time.sleep(max(0.0, DAW_BACK_AFTER_S - KILL_CHECK_S))
        self._start_daw()

    def kill_server(self) -> None:
        """Kill JACK (SIGKILL; SIGTERM with server_signal 'TERM'), start it again, wait for the
        bridge to open its ports by itself, connect the DAW side again."""
        killed_at = time.monotonic()
        before = self.bridge.stats()["ports_reopened"]
        daw_sent = self.daw.onsets_sent   # what it sends into a dead server reaches nobody
        if self.server_signal == "TERM":
            self.server.stop()
        else:
            self.server.kill()
        self._end_life(killed=True, daw_sent=daw_sent)
        time.sleep(SERVER_DOWN_S)
        try:
            self.server.start()
        except Exception:
            _end_jackd_children(self.server.name)
            raise
        if not _still_ours(self.server, 0.0):
            raise RuntimeError(f"JACK server {self.server.name!r} could not start again")
        back_at = time.monotonic()
        ports_back_s = None
        while time.monotonic() - back_at < PORTS_BACK_TIMEOUT_S:
            found = self.server.graph().ports(r":bachbridge (in|out)$")
            if len(found) == 2:
                ports_back_s = time.monotonic() - back_at
                break
            time.sleep(0.01)
        self.restart = {"signal": self.server_signal, "run_s": round(killed_at - self.t0, 2),
                        "down_s": round(back_at - killed_at, 3),
                        "ports_back_s": None if ports_back_s is None else round(ports_back_s, 3),
                        "ports_reopened_before": before}
        if ports_back_s is None:
            self.progress(f"  JACK restarted: the bridge's ports did not come back in {PORTS_BACK_TIMEOUT_S:g} s")
            return
        time.sleep(0.2)   # the bridge's ports are up; let it finish taking them (its watcher swaps them in)
        self._start_life()
        self.restart["gap_s"] = round(time.monotonic() - killed_at, 3)
        self.restart["ports_reopened"] = self.bridge.stats()["ports_reopened"]
        self.progress(f"  JACK killed at {self.restart['run_s']} s and started again: bridge ports back "
                      f"{ports_back_s * 1000:.0f} ms after the server, playing again after "
                      f"{self.restart['gap_s']:.2f} s")

    def sample(self) -> None:
        stats = self.bridge.stats()
        spec = self.bridge.speculator_pid()
        self.samples.append({"run_s": round(self.now(), 2), "bridge_rss_kib": rss_kib(self.bridge.pid),
                             "speculator_rss_kib": rss_kib(spec), "speculator_pid": spec,
                             "notes_in": stats["notes_in"], "p50_ms": stats["p50_latency_ms"],
                             "p99_ms": stats["p99_latency_ms"], "event_errors": stats["event_errors"],
                             "engine_errors": stats["engine_errors"], "ports_reopened": stats["ports_reopened"]})

    # ---- the run

    def run(self) -> SoakReport:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server = own_server(realtime=self.realtime, log=self.workdir / "jackd.log")
        try:
            return self._run()
        finally:
            for child in (self.daw, self.bridge):
                if child is not None:
                    child.kill()
                    child.close()
            for program in (self.clock, self.dump):
                if program is not None:
                    program.close()
            if self.xruns is not None:
                self.xruns.close()
            self.server.close()

    def _run(self) -> SoakReport:
        server = self.server
        if self.require_realtime and not server.realtime_granted:
            raise NoRealtime("jackd could not get realtime scheduling here: a JACK server without it "
                             "drops the events of a client that misses a period, whatever that client runs")
        server_info = {"name": server.name, "log": str(self.workdir / "jackd.log"), "realtime_requested": self.realtime,
                       "realtime_granted": server.realtime_granted, "sync": server.sync,
                       "rate": RATE, "period": PERIOD}
        self.progress(f"JACK {server.name}: realtime {'granted' if server_info['realtime_granted'] else 'NOT granted'}"
                      f", asynchronous, {RATE} Hz, {PERIOD} frames")
        self.bridge = BridgeProcess(self.engines, self.workdir / "bridge.log")
        self.progress(f"bridge pid {self.bridge.pid}: ports up in {self.bridge.ports_up_s:.2f} s, "
                      f"worker realtime {self.bridge.worker_realtime}")
        self.t0 = time.monotonic()
        self._start_life()
        seconds = self.seconds
        plan = [(s, "knob", s) for s in range(1, int(seconds))]
        stop = STOP_EVERY_S
        while stop < seconds - 1:
            plan += [(stop + 0.5, "stop", None), (stop + 0.5 + STOP_FOR_S, "continue", None)]
            stop += STOP_EVERY_S
        plan += [(0.25 * seconds, "kill source", "note"), (0.45 * seconds, "kill source", "phrase"),
                 (0.6 * seconds, "kill server", None)]
        plan += [(s, "sample", None) for s in np.arange(0.0, seconds, STATS_EVERY_S)]
        plan.sort(key=lambda item: (item[0], item[1]))
        for due, what, arg in plan:
            _sleep_until_monotonic(self.t0 + due)
            if what in ("knob", "stop") and self.now() - due > OVERDUE_S:
                continue   # after a kill: on with the evening, not a burst of what was missed
            if what == "knob":
                self.turn_knob(arg)
            elif what == "stop":
                self.transport_stop()
            elif what == "continue":
                self.transport_continue()
            elif what == "kill source":
                self.kill_source(arg)
            elif what == "kill server":
                self.kill_server()
                if self.restart.get("ports_back_s") is None:
                    break
            elif what == "sample":
                self.sample()
        _sleep_until_monotonic(self.t0 + seconds)
        self.transport_continue()
        if self.daw is not None:
            self.sample()
            self.daw.stop()
            self.onsets_sent += self.daw.onsets_sent
            self.daw.close()
            self.daw = None
            time.sleep(END_LISTEN_S)
        final = self.bridge.stats()
        self._end_life(killed=False)
        closing = self.bridge.quit()
        self.bridge.close()
        self.bridge = None
        return self._report(server_info, final, closing)

    def _report(self, server_info: dict, final: dict, closing: dict) -> SoakReport:
        run = Run(self.seconds, self.engines, self.slice_s, server_info, self.lives, self.onsets_sent,
                  final, closing, self.samples, self.restart,
                  [{"mode": kill["mode"], "run_s": kill["run_s"], "bridge_view": kill["bridge_view"]}
                   for kill in self.source_kills])
        run.save(self.workdir)
        return report_of(run)


def _sleep_until_monotonic(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


class NoRealtime(RuntimeError):
    """The JACK server did not get realtime scheduling (and it was required)."""


def run_soak(seconds: float, engines: list[str], workdir: Path | None = None, slice_s: float = 300.0,
             progress=print, realtime: bool = True, server_signal: str = "KILL",
             require_realtime: bool = False) -> SoakReport:
    """The evening for `seconds` of playing (the test's entry point). NoRealtime when
    `require_realtime` and the JACK server did not get realtime scheduling."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    return Soak(seconds, engines, workdir, slice_s, progress, realtime, server_signal, require_realtime).run()


# ---------------------------------------------------------------- the command line

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of playing (default 30)")
    parser.add_argument("--engines", default="coconet-live,rnnrbm",
                        help="two engines (shipped names or .onnx paths), the first one to begin with")
    parser.add_argument("--slice-minutes", type=float, default=5.0, help="latency figures per slice of this long")
    parser.add_argument("--no-realtime", action="store_true", help="run JACK without realtime scheduling")
    parser.add_argument("--server-signal", choices=("KILL", "TERM"), default="KILL",
                        help="how the JACK server is ended mid-evening (default KILL: it dies, as in a crash)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--workdir", type=Path, help="logs of jackd, the bridge and the DAW (default: a temp dir)")
    parser.add_argument("--reaccount", type=Path, metavar="WORKDIR",
                        help="count an evening run before (its --workdir) again, and report it")
    args = parser.parse_args(argv)
    if args.reaccount:
        report = reaccount(args.reaccount)
        return finish(report, args.out)
    missing = jackrig.missing_programs()
    if missing:
        sys.exit(f"bench_soak: missing {', '.join(missing)} (Debian: jackd2, jack-midi-clock)")
    engines = args.engines.split(",")
    report = run_soak(args.minutes * 60, engines, args.workdir, args.slice_minutes * 60,
                      realtime=not args.no_realtime, server_signal=args.server_signal)
    return finish(report, args.out)


def finish(report: SoakReport, out: Path | None) -> int:
    print_report(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=1, default=str))
        print(f"report: {out}")
    return 0 if report.verdict["all"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
