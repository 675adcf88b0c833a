"""The live bridge's figures, through a real JACK server (dummy driver, 48 kHz, 64-frame period).

    python bench/bench_live.py [--notes 250] [--out runs/bench-live.json] [--engine coconet-live]

Starts its own JACK server, then, each in its own process, as a user would run them:
- the floor: a trivial echo client (polls its input every 0.5 ms like the bridge, sends each
  note-on straight back): the bare JACK round trip this machine allows;
- `bachbridge live` (coconet-live, note mode) with speculation, then without (`--no-speculate`);
- `bachbridge live --mode phrase --lookahead 1`.
This process plays the DAW: JSB test sopranos (the bundled example melody when ../shared is not
there), one note every 8th at 120 bpm, each released half-way, and stamps what comes back.
Reported: melody note-on sent -> first harmony note-on received, p50/p99 (and the bridge's own
figures: speculation hit rate); phrase mode's timing error (echo received - (sent + delay)), p99
of its size; the bridge process's CPU use while playing (% of one core); and the time from
starting `bachbridge live` to both its ports being visible in JACK (median of 3 starts).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JACKD_ARGS = ["--sync", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "64"]
NOTE_ON, NOTE_OFF = 0x90, 0x80
BPM = 120.0
EIGHTH_S = 60.0 / BPM / 2
IDLE_SLEEP_S = 0.0005   # the bridge's (bridge.live.IDLE_SLEEP_S): the echo client polls alike
ENGINE = "coconet-live"  # --engine


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q, method="inverted_cdf")) if values else None


# ---------------------------------------------------------------- the JACK server

class JackServer:
    """jackd with the dummy driver under a private name (exported as JACK_DEFAULT_SERVER)."""

    def __init__(self):
        jackd = shutil.which("jackd")
        if jackd is None:
            sys.exit("bench_live: jackd is not installed (Debian: apt-get install jackd2; `make test` does it)")
        self.name = f"bachbridge-bench-{uuid.uuid4().hex[:6]}"
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_START_SERVER"] = "1"
        self.proc = subprocess.Popen([jackd, "-n", self.name, *JACKD_ARGS], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        import rtmidi

        deadline = time.monotonic() + 10
        while True:
            try:
                self._probes = [rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench-probe"),
                                rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-probe")]
                break
            except rtmidi.RtMidiError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("bench_live: jackd did not start")
                time.sleep(0.05)

    def ports(self) -> list[str]:
        """Every MIDI port's name (without its client's) in the graph (jack_lsp would do, but it can hang while clients come and go)."""
        return [name.split(":", 1)[-1] for probe in self._probes for name in probe.get_ports()]

    def close(self):
        for probe in self._probes:
            probe.delete()
        self.proc.terminate()
        self.proc.wait(timeout=5)


# ---------------------------------------------------------------- the echo client (the floor)

def echo_client() -> None:
    """Run as its own process: 'echo in' -> 'echo out', each note-on sent back on channel 2."""
    import rtmidi

    inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="echo", queue_size_limit=4096)
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="echo")
    inp.open_virtual_port("echo in")
    out.open_virtual_port("echo out")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.is_set():
        item = inp.get_message()
        if item is None:
            time.sleep(IDLE_SLEEP_S)
            continue
        data = item[0]
        if data[0] & 0xF0 in (NOTE_ON, NOTE_OFF):
            out.send_message([data[0] & 0xF0 | 1, data[1], data[2]])
    for port in (inp, out):
        port.close_port()
        port.delete()  # close the JACK client itself: under --sync a client left to exit holds the graph


# ---------------------------------------------------------------- the DAW

class Daw:
    """Sends into `target`, receives from `source`; received messages stamped by a polling thread."""

    def __init__(self, target: str, source: str):
        import rtmidi

        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="daw")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="daw", queue_size_limit=8192)
        self.inp.ignore_types(sysex=False, timing=False, active_sense=False)
        self.out.open_port(_index(self.out.get_ports(), target))
        self.inp.open_port(_index(self.inp.get_ports(), source))
        time.sleep(0.05)
        self.received: list[tuple[bytes, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        while not self._stop.is_set():
            while (item := self.inp.get_message()) is not None:
                self.received.append((bytes(item[0]), time.perf_counter_ns()))
            time.sleep(0.0002)

    def play(self, melody: list[int], note_s: float = EIGHTH_S) -> list[tuple[int, int]]:
        """Each pitch for note_s (released half-way), on a steady grid; [(pitch, sent_ns)]."""
        sent = []
        start = time.perf_counter()
        for k, pitch in enumerate(melody):
            _sleep_until(start + k * note_s)
            t = time.perf_counter_ns()
            self.out.send_message([NOTE_ON, pitch, 80])
            sent.append((pitch, t))
            _sleep_until(start + (k + 0.5) * note_s)
            self.out.send_message([NOTE_OFF, pitch, 0])
        time.sleep(1.5)  # the last answers, phrase mode's a lookahead later too
        return sent

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for port in (self.out, self.inp):
            port.close_port()
            port.delete()


def _wait_until_gone(server: JackServer, port: str, timeout_s: float = 20.0) -> None:
    """Until a client that exited has left the graph: with --sync, JACK holds the next client's
    start until then (the next run's ports-up time would count it)."""
    deadline = time.monotonic() + timeout_s
    while port in server.ports() and time.monotonic() < deadline:
        time.sleep(0.02)


def _index(names, port):
    hits = [i for i, n in enumerate(names) if n.split(":", 1)[-1] == port]
    if len(hits) != 1:
        raise SystemExit(f"bench_live: port {port!r} not found among {names}")
    return hits[0]


def _sleep_until(t: float) -> None:
    while (left := t - time.perf_counter()) > 0:
        time.sleep(min(left, 0.002))


def first_answers(sent, received, echo_channel=None, delay_ns=0, early_ns=0) -> list[float]:
    """ms from each note-on sent (+ delay_ns) to the first note-on received after it (on a harmony
    channel, or on echo_channel), looking from early_ns before; negative when early. A note with no
    answer before the next note's window counts as missing."""
    out = []
    ons = [t for m, t in received if m[0] & 0xF0 == NOTE_ON and m[2] > 0
           and ((m[0] & 0x0F) == echo_channel if echo_channel is not None else (m[0] & 0x0F) != 0)]
    j = 0
    starts = [t + delay_ns - early_ns for _, t in sent]
    for k, (_, t_sent) in enumerate(sent):
        while j < len(ons) and ons[j] < starts[k]:
            j += 1
        if j < len(ons) and (k + 1 == len(sent) or ons[j] < starts[k + 1]):
            out.append((ons[j] - t_sent - delay_ns) / 1e6)
    return out


# ---------------------------------------------------------------- the runs

def melodies(limit: int) -> list[int]:
    """Soprano note onsets (pitches) of the JSB test chorales, up to `limit` notes."""
    try:
        from models.data import find_jsb16, load_jsb16

        pitches = []
        for chorale in load_jsb16(find_jsb16(), "test"):
            soprano = chorale[:, 0]
            for t in range(len(soprano)):
                if soprano[t] >= 0 and (t == 0 or soprano[t] != soprano[t - 1]):
                    pitches.append(int(soprano[t]))
            if len(pitches) >= limit:
                return pitches[:limit]
        return pitches
    except (FileNotFoundError, OSError):
        import mido

        example = mido.MidiFile(ROOT / "bridge" / "examples" / "chorale_melody.mid")
        notes = [m.note for m in example if m.type == "note_on" and m.velocity > 0]
        return (notes * (limit // len(notes) + 1))[:limit]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bridge(server: JackServer, melody: list[int], extra: list[str], label: str) -> dict:
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    command = [sys.executable, "-m", "bridge", "live", "--api", "jack", "--clock", "internal",
               "--bpm", f"{BPM:g}", "--stats-json", str(stats_path), "--engine", ENGINE, *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    while not {"bachbridge in", "bachbridge out"} <= set(server.ports()):
        if proc.poll() is not None:
            raise SystemExit(f"bench_live: bachbridge live exited: {proc.stderr.read()}")
        time.sleep(0.005)
    ports_up_s = time.perf_counter() - started
    daw = Daw("bachbridge in", "bachbridge out")
    cpu_before, wall_before = cpu_seconds(proc.pid), time.perf_counter()
    sent = daw.play(melody)
    cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.perf_counter() - wall_before)
    daw.close()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    _wait_until_gone(server, "bachbridge in")
    figures = json.loads(stats_path.read_text())
    result = {"label": label, "notes": len(sent), "ports_up_s": ports_up_s, "cpu_percent": 100 * cpu,
              "bridge": {k: figures[k] for k in ("ports_up_s", "warm_up_s", "speculation_lookups",
                                                 "speculation_hits", "p50_latency_ms", "p99_latency_ms",
                                                 "p99_phrase_timing_ms", "engine_errors", "event_errors")}}
    if "--mode" in extra:
        lookahead = float(extra[extra.index("--lookahead") + 1])
        delay_ns = int(lookahead * 60e9 / BPM)
        errors = first_answers(sent, daw.received, echo_channel=0, delay_ns=delay_ns, early_ns=20_000_000)
        result.update(timing_error_ms=errors, answered=len(errors))
    else:
        latencies = first_answers(sent, daw.received)
        result.update(latencies_ms=latencies, answered=len(latencies))
    return result


def run_echo(server: JackServer, melody: list[int]) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--echo-client"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    while not {"echo in", "echo out"} <= set(server.ports()):
        time.sleep(0.005)
    daw = Daw("echo in", "echo out")
    sent = daw.play(melody)
    daw.close()
    proc.terminate()
    proc.wait(timeout=5)
    _wait_until_gone(server, "echo in")
    latencies = first_answers(sent, daw.received)
    return {"label": "echo floor", "notes": len(sent), "latencies_ms": latencies, "answered": len(latencies)}


def summary(result: dict) -> str:
    line = f"{result['label']:<28} {result['answered']:>4}/{result['notes']} answered"
    if "latencies_ms" in result:
        lat = result["latencies_ms"]
        line += f"  latency p50 {percentile(lat, 50):6.2f} ms  p99 {percentile(lat, 99):6.2f} ms"
    if "timing_error_ms" in result:
        err = [abs(e) for e in result["timing_error_ms"]]
        line += f"  timing error p50 {percentile(err, 50):6.2f} ms  p99 {percentile(err, 99):6.2f} ms"
    if "cpu_percent" in result:
        line += f"  CPU {result['cpu_percent']:5.1f}%  ports up {result['ports_up_s'] * 1e3:5.0f} ms"
        b = result["bridge"]
        if b["speculation_lookups"]:
            line += f"  speculation hits {b['speculation_hits'] / b['speculation_lookups']:.0%}"
    return line


def main() -> int:
    global ENGINE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notes", type=int, default=250)
    p.add_argument("--out", default=None, help="write every figure as JSON here")
    p.add_argument("--engine", default=ENGINE, help=f"the shipped model the bridge runs (default {ENGINE})")
    p.add_argument("--echo-client", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    ENGINE = args.engine
    if args.echo_client:
        echo_client()
        return 0
    melody = melodies(args.notes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` stops jackd
    server = JackServer()
    results = []
    try:
        results.append(run_echo(server, melody))
        print(summary(results[-1]), flush=True)
        for label, extra in (("note, speculating", []),
                             ("note, no speculation", ["--no-speculate"]),
                             ("phrase, lookahead 1 beat", ["--mode", "phrase", "--lookahead", "1"])):
            results.append(run_bridge(server, melody, extra, label))
            print(summary(results[-1]), flush=True)
        ups = [run_bridge(server, melody[:4], [], f"ports up {k}")["ports_up_s"] for k in range(3)]
        print(f"bachbridge live start -> both ports in JACK: median {sorted(ups)[1] * 1e3:.0f} ms "
              f"({', '.join(f'{u * 1e3:.0f}' for u in ups)} ms)")
    finally:
        server.close()
    print(f"({len(melody)} notes, 8ths at {BPM:g} bpm; {ENGINE}, 1 onnxruntime thread; {os.cpu_count()} CPUs)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
