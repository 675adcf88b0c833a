"""The live bridge's figures through a real JACK server (dummy driver, 48 kHz, 64-frame period),
asynchronous (no --sync), as a desktop runs one: answers lost, latency, CPU, ports-up time.

    python bench/bench_live.py [--notes 250] [--load 2] [--stock-seconds 130] [--engine coconet-live]
                               [--stock floor,speculating,plain] [--out runs/bench-live.json] [--let-cpus-sleep]

1. Latency, side by side in one run, on a server with realtime scheduling, `--load` processes
   burning a core each (default 2: both cores busy): a trivial echo client (the floor: the bare
   JACK round trip, polling like the bridge), then `bachbridge live` speculating, without
   speculation, and in phrase mode (lookahead 1 beat). This process plays the DAW through
   python-rtmidi: JSB test sopranos (the bundled melody when ../shared is not there), one note
   every 8th at 120 bpm, each released half-way; it stamps what comes back. Latency: melody
   note-on sent -> first harmony note-on received (phrase mode: echo received - (sent + delay)).
2. The stock reproduction, on a server without realtime scheduling and no extra load:
   jack_midiseq loops 67 69 71 72 74 72 71 69 (8ths, 12,000 frames apart, 11,000 long) into
   `bachbridge live --no-echo`; jack_midi_dump listens to the sequencer and to 'bachbridge out'.
   With speculation and without, and a trivial echo client in the bridge's place (the floor),
   `--stock-seconds` each (130 s: over 500 onsets). `--notes 0 --stock speculating,floor
   --stock-seconds 30` compares just those two, in that order, with the xruns a second.
Lost: a melody onset with no harmony note-on before the next one (a legato onset under sounding
harmony counts as answered). Lost answers are split into those in whose span the JACK server
reported an xrun (a cycle it could not complete: what was sent in it is JACK's to lose; a VM
reports them every few seconds) and the others, the bridge's: any of those fails the bench
(exit status 1). Also: the bridge process's CPU (% of one core) while playing, its speculation
hit rate and the speculator process's CPU, and the time from starting `bachbridge live` to both
ports in JACK (median of 3).
The bridge keeps the CPUs out of their deep idle states while it runs where the OS lets it, and
the echo client does alike; `--let-cpus-sleep` makes both let them idle (a run where the CPUs
could idle deep is marked so).
`--out` keeps every figure and the raw records (what was sent and received, the xruns), to read
a loss again. Background jobs at nice 19 (training) are paused while it runs.
"""
from __future__ import annotations

import argparse
import json
import os
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

from bridge.scheduling import cpu_latency_limit_us  # noqa: E402
from jackrig import (CpuLoad, JackServer, MidiDump, MidiSeq, Outside, XrunMonitor, answers,  # noqa: E402
                     eighths, missing_programs)

NOTE_ON, NOTE_OFF = 0x90, 0x80
BPM = 120.0
EIGHTH_S = 60.0 / BPM / 2
IDLE_SLEEP_S = 0.0005   # the bridge's (bridge.live.IDLE_SLEEP_S): the echo client polls alike
STOCK_PATTERN = [67, 69, 71, 72, 74, 72, 71, 69]
ENGINE = "coconet-live"
# --let-cpus-sleep: the bridge and the echo client let the CPUs idle deep (bridge.scheduling.keep_cpus_awake)
CPU_SLEEP_ARGS: list[str] = []
# the stock runs, and the latency runs before phrase mode's: name -> (label, `bachbridge live`
# arguments; None: the echo client instead)
STOCK_RUNS = {"floor": ("echo client (the floor)", None),
              "speculating": ("note, speculating", []),
              "plain": ("note, no speculation", ["--no-speculate"])}


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q, method="inverted_cdf")) if len(values) else None


# ---------------------------------------------------------------- the echo client (the floor)

def echo_client(cpus_awake: bool) -> None:
    """Run as its own process: 'echo in' -> 'echo out', each note answered on channels 2-4, as
    the bridge answers (one JACK client per port, polled every 0.5 ms, the CPUs kept awake unless
    `cpus_awake` is False)."""
    import rtmidi

    from bridge.scheduling import keep_cpus_awake

    if cpus_awake:
        keep_cpus_awake()   # held until the process ends

    inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="echo", queue_size_limit=4096)
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="echo")
    inp.open_virtual_port("echo in")
    out.open_virtual_port("echo out")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    while not stop.is_set():
        item = inp.get_message()
        if item is None:
            time.sleep(IDLE_SLEEP_S)
            continue
        data = item[0]
        if data[0] & 0xF0 in (NOTE_ON, NOTE_OFF):
            for channel in (1, 2, 3):
                out.send_message([data[0] & 0xF0 | channel, data[1] - 5 * channel, data[2]])
    for port in (inp, out):
        port.close_port()
        port.delete()


def start_echo(server: JackServer) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--echo-client", *CPU_SLEEP_ARGS], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    server.port("echo out")
    return proc


def start_live(server: JackServer, extra: list[str], stats: Path) -> tuple[subprocess.Popen, float]:
    """`bachbridge live` as a user runs it; (process, seconds until both its ports are in JACK)."""
    command = [sys.executable, "-m", "bridge", "live", "--api", "jack", "--engine", ENGINE, *CPU_SLEEP_ARGS,
               "--stats-json", str(stats), *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    while len(server.graph().ports(r":bachbridge (in|out)$")) < 2:
        if proc.poll() is not None:
            raise SystemExit(f"bench_live: bachbridge live exited: {proc.stderr.read()}")
        time.sleep(0.005)
    return proc, time.perf_counter() - started


def stop_live(proc: subprocess.Popen, stats: Path) -> dict:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    return json.loads(stats.read_text()) if stats.exists() else {}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the live children of `pid` (the speculator's process), 0 when none."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                total += cpu_seconds(int(child))
            except OSError:
                pass   # ended meanwhile
    return total


# ---------------------------------------------------------------- 1. latency, a python-rtmidi DAW

def play(outside: Outside, sender, melody: list[int]) -> list[int]:
    """Each pitch an 8th, released half-way, on a steady grid; the send times (perf_counter_ns)."""
    sent = []
    start = time.perf_counter()
    for k, pitch in enumerate(melody):
        _sleep_until(start + k * EIGHTH_S)
        sent.append(time.perf_counter_ns())
        sender.send_message([NOTE_ON, pitch, 80])
        _sleep_until(start + (k + 0.5) * EIGHTH_S)
        sender.send_message([NOTE_OFF, pitch, 0])
    time.sleep(1.5)  # the last answers, phrase mode's a lookahead later too
    return sent


def _sleep_until(t: float) -> None:
    while (left := t - time.perf_counter()) > 0:
        time.sleep(min(left, 0.002))


def first_answers(sent, received, xrun_times, echo_channel=None, delay_ns=0, early_ns=0):
    """For each note-on sent: ms to the first note-on received after it (on a harmony channel, or
    on echo_channel), looking from early_ns before (+ delay_ns); None when none came before the
    next note's window. Returns (latencies, lost indices, lost indices with a JACK xrun in their span)."""
    ons = [t for m, t in received if m[0] & 0xF0 == NOTE_ON and m[2] > 0
           and ((m[0] & 0x0F) == echo_channel if echo_channel is not None else (m[0] & 0x0F) != 0)]
    starts = [t + delay_ns - early_ns for t in sent]
    latencies, lost, at_xruns = [], [], []
    j = 0
    for k, t_sent in enumerate(sent):
        while j < len(ons) and ons[j] < starts[k]:
            j += 1
        end = starts[k + 1] if k + 1 < len(sent) else float("inf")
        if j < len(ons) and ons[j] < end:
            latencies.append((ons[j] - t_sent - delay_ns) / 1e6)
        else:
            lost.append(k)
            if any(starts[k] - 5_000_000 <= x <= min(end, starts[k] + 500_000_000) for x in xrun_times):
                at_xruns.append(k)
    return latencies, lost, at_xruns


def run_latency(server: JackServer, melody: list[int], label: str, extra: list[str] | None) -> dict:
    """One run: the echo floor (extra None) or `bachbridge live EXTRA`, the DAW playing `melody`."""
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    if extra is None:
        proc, ports_up = start_echo(server), None
        port_in, port_out = "echo in", "echo out"
    else:
        proc, ports_up = start_live(server, ["--clock", "internal", "--bpm", f"{BPM:g}", *extra], stats_path)
        port_in, port_out = "bachbridge in", "bachbridge out"
    outside = Outside(realtime=server.realtime_granted)
    xruns = XrunMonitor(server)
    try:
        outside.receiver(port_out)
        sender = outside.sender(port_in)
        cpu_before, wall_before = cpu_seconds(proc.pid), time.perf_counter()
        children_before = children_cpu_seconds(proc.pid)
        cpu_limit_us = cpu_latency_limit_us()
        sent = play(outside, sender, melody)
        wall = time.perf_counter() - wall_before
        cpu = (cpu_seconds(proc.pid) - cpu_before) / wall
        children_cpu = (children_cpu_seconds(proc.pid) - children_before) / wall
    finally:
        xruns.close()
        outside.close()
    if extra is None:
        proc.terminate()
        proc.wait(10)
        bridge = {}
    else:
        bridge = stop_live(proc, stats_path)
    phrase = extra is not None and "--mode" in extra
    delay_ns = int(float(extra[extra.index("--lookahead") + 1]) * 60e9 / BPM) if phrase else 0
    latencies, lost, at_xruns = first_answers(sent, outside.received, xruns.times_ns,
                                              echo_channel=0 if phrase else None, delay_ns=delay_ns,
                                              early_ns=20_000_000 if phrase else 0)
    return {"label": label, "notes": len(sent), "latencies_ms": latencies, "lost": lost, "lost_at_xruns": at_xruns,
            "xruns": len(xruns.frames), "cpu_percent": 100 * cpu, "speculator_cpu_percent": 100 * children_cpu,
            "ports_up_s": ports_up, "cpu_latency_limit_us": cpu_limit_us,
            # the raw record, to read a loss again (perf_counter_ns stamps of this process)
            "sent_ns": sent, "received": [(t, m.hex(" ")) for m, t in outside.received],
            "xrun_ns": list(xruns.times_ns),
            "bridge": {k: bridge.get(k) for k in ("speculation_lookups", "speculation_hits", "p50_latency_ms",
                                                   "p99_latency_ms", "engine_errors", "event_errors", "notes_in")}}


# ---------------------------------------------------------------- 2. the stock reproduction

def run_stock(server: JackServer, label: str, extra: list[str] | None, seconds: float) -> dict:
    """jack_midiseq -> the bridge (or the echo floor) -> jack_midi_dump, for `seconds`."""
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    if extra is None:
        proc, port_in, port_out = start_echo(server), "echo in", "echo out"
    else:
        proc, _ = start_live(server, ["--no-echo", *extra], stats_path)
        port_in, port_out = "bachbridge in", "bachbridge out"
    xruns = XrunMonitor(server)
    dump = MidiDump(server, "dump")
    seq = None
    try:
        server.connect(port_out, "dump:input")
        seq = MidiSeq(server, "seq", eighths(STOCK_PATTERN), loop_frames=len(STOCK_PATTERN) * 12_000)
        server.connect("seq:out", port_in)
        server.connect("seq:out", "dump:input")
        time.sleep(seconds)
    finally:
        if seq is not None:
            seq.close()
        time.sleep(0.5)
        xruns.close()
    bridge = {}
    if extra is None:
        proc.terminate()
        proc.wait(10)
    else:
        bridge = stop_live(proc, stats_path)
    time.sleep(0.3)
    events = dump.events()
    dump.close()
    got = answers(events, onset_grid=12_000, xruns=[x - dump.start_frame for x in xruns.frames])
    return {"label": label, "bridge": extra is not None, "onsets": got.onsets, "lost": got.lost, "lost_by_sender": got.lost_by_sender,
            "latencies_ms": got.latencies, "xruns": len(xruns.frames), "line": got.line(),
            "speculation": (bridge.get("speculation_hits"), bridge.get("speculation_lookups")),
            # the raw record, to read a loss again: jack_midi_dump's (frame, bytes), the xruns
            # on its frame count
            "record": [(frame, m.hex(" ")) for frame, m in events],
            "xrun_frames": [x - dump.start_frame for x in xruns.frames]}


# ---------------------------------------------------------------- reporting

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
    except (FileNotFoundError, OSError, TypeError):
        import mido

        example = mido.MidiFile(ROOT / "bridge" / "examples" / "chorale_melody.mid")
        notes = [m.note for m in example if m.type == "note_on" and m.velocity > 0]
        return (notes * (limit // len(notes) + 1))[:limit]


def latency_line(result: dict) -> str:
    lat = result["latencies_ms"]
    line = (f"{result['label']:<28} {len(lat):>4}/{result['notes']} answered, {len(result['lost'])} lost "
            f"({len(result['lost_at_xruns'])} at xruns; {result['xruns']} xruns)")
    if lat:
        line += f"  p50 {percentile(lat, 50):6.2f} ms  p99 {percentile(lat, 99):6.2f} ms"
    if result["cpu_latency_limit_us"] != 0:
        line += "  (CPUs idle deep)"
    if result["ports_up_s"] is not None:
        line += f"  CPU {result['cpu_percent']:5.1f}%"
        b = result["bridge"]
        if b.get("speculation_lookups"):
            line += (f"  speculation hits {b['speculation_hits'] / b['speculation_lookups']:.0%}"
                     f" (its process: CPU {result['speculator_cpu_percent']:.1f}%)")
    return line


class PausedBackground:
    """Background jobs at nice 19 (a training run) stopped while the bench measures."""

    def __enter__(self):
        self.pids = [int(p) for p, ni in (line.split() for line in subprocess.run(
            ["ps", "-eo", "pid=,ni="], capture_output=True, text=True).stdout.splitlines()) if ni == "19"]
        for pid in self.pids:
            _signal(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        for pid in self.pids:
            _signal(pid, signal.SIGCONT)
        return False


def _signal(pid: int, signum) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def main() -> int:
    global ENGINE, CPU_SLEEP_ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notes", type=int, default=250, help="notes per latency run (0: skip the latency runs)")
    p.add_argument("--load", type=int, default=2, help="processes burning a core during the latency runs")
    p.add_argument("--stock-seconds", type=float, default=130.0, help="seconds per stock run (0: skip them)")
    p.add_argument("--stock", default=",".join(STOCK_RUNS),
                   help=f"which stock runs, in this order, comma-separated (default {','.join(STOCK_RUNS)})")
    p.add_argument("--engine", default=ENGINE, help=f"the shipped model the bridge runs (default {ENGINE})")
    p.add_argument("--out", default=None, help="write every figure as JSON here")
    p.add_argument("--let-cpus-sleep", action="store_true",
                   help="the bridge and the echo client let the CPUs idle deep (default: kept awake where the OS lets them)")
    p.add_argument("--echo-client", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_client:
        echo_client(cpus_awake=not args.let_cpus_sleep)
        return 0
    missing = missing_programs()
    if missing:
        sys.exit(f"bench_live: missing {', '.join(missing)} (Debian: jackd2, jack-midi-clock; `make test` installs them)")
    ENGINE = args.engine
    CPU_SLEEP_ARGS = ["--let-cpus-sleep"] if args.let_cpus_sleep else []
    stock_runs = [name.strip() for name in args.stock.split(",") if name.strip()]
    unknown = [name for name in stock_runs if name not in STOCK_RUNS]
    if unknown:
        sys.exit(f"bench_live: unknown stock run {', '.join(unknown)} (have: {', '.join(STOCK_RUNS)})")
    melody = melodies(args.notes) if args.notes > 0 else []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` stops jackd
    results = {"latency": [], "stock": [], "ports_up_s": []}
    with PausedBackground():
        if melody:
            latency_runs(args, melody, results)
        if args.stock_seconds > 0 and stock_runs:
            with JackServer(realtime=False) as server:
                print(f"2. stock reproduction: asynchronous JACK without realtime scheduling, no extra load, "
                      f"{args.stock_seconds:g} s each", flush=True)
                for name in stock_runs:
                    label, extra = STOCK_RUNS[name]
                    results["stock"].append(run_stock(server, label, extra, args.stock_seconds))
                    r = results["stock"][-1]
                    print(f"   {label:<28} {r['line']}; {r['xruns']} xruns ({r['xruns'] / args.stock_seconds:.1f}/s)"
                          + (f"; speculation hits {r['speculation'][0]} of {r['speculation'][1]}" if r["speculation"][1] else ""),
                          flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    bridge_losses = [(r["label"], k) for r in results["latency"][1:] for k in r["lost"] if k not in r["lost_at_xruns"]]
    bridge_losses += [(r["label"], k) for r in results["stock"] if r["bridge"] for k in r["lost_by_sender"]]
    if bridge_losses:
        print(f"FAILED: {len(bridge_losses)} answers lost with no JACK xrun to blame: {bridge_losses[:10]}")
        return 1
    return 0


def latency_runs(args, melody: list[int], results: dict) -> None:
    """Part 1: the latency runs and the ports-up time, on a realtime server under load."""
    with JackServer(realtime=True) as server:
        print(f"1. latency: asynchronous JACK, realtime scheduling {'granted' if server.realtime_granted else 'NOT granted'}"
              f", {args.load} processes burning a core; {len(melody)} notes, 8ths at {BPM:g} bpm, {ENGINE}", flush=True)
        with CpuLoad(args.load):
            for label, extra in (*STOCK_RUNS.values(), ("phrase, lookahead 1 beat", ["--mode", "phrase", "--lookahead", "1"])):
                results["latency"].append(run_latency(server, melody, label, extra))
                print("   " + latency_line(results["latency"][-1]), flush=True)
        for _ in range(3):
            proc, up = start_live(server, [], Path(tempfile.mkdtemp()) / "stats.json")
            stop_live(proc, Path("/nonexistent"))
            results["ports_up_s"].append(up)
        ups = sorted(results["ports_up_s"])
        print(f"   bachbridge live start -> both ports in JACK: median {ups[1] * 1e3:.0f} ms "
              f"({', '.join(f'{u * 1e3:.0f}' for u in results['ports_up_s'])} ms)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
