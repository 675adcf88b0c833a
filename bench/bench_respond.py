"""Respond mode through a real JACK server (dummy driver, 48 kHz, 64-frame period, asynchronous):
the time from the trigger to the answer's first note, and how late that note is after its beat.

    python bench/bench_respond.py [--calls 20] [--harmonizers coconet,chords] [--out runs/bench-respond.json]

This process plays the DAW through python-rtmidi: Start, then MIDI clock at 120 bpm (24 a
quarter, each one's send time kept: the DAW's beat grid), and calls: a bar of a JSB test
soprano's 8ths and quarters from a bar line (the bundled melody when ../shared is not there),
then silence while `bachbridge live --mode respond --clock midi` (phrase engine, 2-bar answers,
--respond-after 1) answers, then a bar's rest before the next call. Per call:
- trigger -> first answer note: from the call's last note-off sent + one beat (the silence the
  bridge waits for) to the answer's first note received;
- lateness: the answer's first note received - the DAW's beat it falls on (the clock sent at
  that beat); the bar is p99 <= 50 ms;
- answered: calls that got an answer (every one, or the bench fails with exit status 1);
and at the end the notes left hanging (none). One run per harmonizer (the voices under the
answer's melody: `coconet` runs the full annealed sampler on the whole phrase; `chords` voices
the drawn chords).
"""
from __future__ import annotations

import argparse
import json
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

from jackrig import JackServer, Outside, XrunMonitor, hanging, missing_programs  # noqa: E402

NOTE_ON, NOTE_OFF, CLOCK, START, STOP = 0x90, 0x80, 0xF8, 0xFA, 0xFC
BPM = 120.0
CLOCK_S = 60.0 / BPM / 24
BEAT_S = 60.0 / BPM
BAR_S = 4 * BEAT_S
ANSWER_BARS = 2


def calls_from_jsb(count: int) -> list[list[tuple[float, int, float]]]:
    """Bars of JSB test sopranos as (onset beat, pitch, length in beats), each from a bar line."""
    from models import phrase_data as pd
    from models.data import find_jsb16, load_jsb16

    npz = find_jsb16()
    chorales = load_jsb16(npz, "test") if npz is not None and npz.exists() else []
    calls = []
    for chorale in chorales:
        downbeat = pd.jsb_downbeat(chorale[:, 0])
        bar = chorale[downbeat + 16:downbeat + 32, 0]
        line = pd.line_of(bar)
        notes = [(o / 4, int(p), n / 4) for p, o, n in zip(line.pitch, line.onset, line.length) if p >= 0]
        if len(notes) >= 3:
            calls.append(notes)
        if len(calls) == count:
            break
    while len(calls) < count:   # no JSB data: the bundled example's rhythm, a bar at a time
        calls.append([(0.0, 67, 1.0), (1.0, 69, 1.0), (2.0, 71, 0.5), (2.5, 72, 0.5), (3.0, 71, 1.0)])
    return calls


class Daw:
    """Start, then a clock every 1/24 beat from its own thread; `beat_time(k)`: when beat k's clock was sent."""

    def __init__(self, sender):
        self.sender = sender
        self.clock_times: list[int] = []
        self._stop = threading.Event()
        self.sender.send_message([START])
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        k = 0
        while not self._stop.is_set():
            _sleep_until(self.t0 + k * CLOCK_S)
            self.clock_times.append(time.perf_counter_ns())
            self.sender.send_message([CLOCK])
            k += 1

    def time_of_beat(self, beat: float) -> float:
        return self.t0 + beat * BEAT_S

    def beat_sent_ns(self, ns: int) -> int:
        """The send time of the beat clock nearest to `ns`."""
        beats = self.clock_times[::24]
        return min(beats, key=lambda b: abs(b - ns))

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.sender.send_message([STOP])


def _sleep_until(t: float) -> None:
    while (left := t - time.perf_counter()) > 0:
        time.sleep(min(left, 0.002))


def run(server: JackServer, harmonizer: str, calls) -> dict:
    stats_path = Path(tempfile.mkdtemp()) / "stats.json"
    command = [sys.executable, "-m", "bridge", "live", "--api", "jack", "--mode", "respond", "--clock", "midi",
               "--answer-bars", str(ANSWER_BARS), "--respond-after", "1", "--harmonizer", harmonizer,
               "--temperature", "0.8", "--stats-json", str(stats_path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    while len(server.graph().ports(r":bachbridge (in|out)$")) < 2:
        if proc.poll() is not None:
            raise SystemExit(f"bench_respond: bachbridge live exited: {proc.stderr.read()}")
        time.sleep(0.01)
    proc.stdout.readline()   # "ports up ..." once warm
    outside = Outside(realtime=True)
    xruns = XrunMonitor(server)
    try:
        outside.receiver("bachbridge out")
        sender = outside.sender("bachbridge in")
        daw = Daw(sender)
        beat = 4.0   # a bar of clock first, so the bridge knows the tempo
        results = []
        for notes in calls:
            for onset, pitch, length in notes:
                _sleep_until(daw.time_of_beat(beat + onset))
                sender.send_message([NOTE_ON, pitch, 80])
                _sleep_until(daw.time_of_beat(beat + onset + length * 0.9))
                sender.send_message([NOTE_OFF, pitch, 0])
            last_off = time.perf_counter_ns()
            count = len(outside.received)
            # the answer: at most 2 beats to start, its 2 bars, then a bar's rest
            beat += 4 + 2 + 4 * ANSWER_BARS + 4
            _sleep_until(daw.time_of_beat(beat) - 0.05)
            ons = [t for m, t in outside.received[count:] if m[0] & 0xF0 == NOTE_ON and m[2] > 0 and t > last_off]
            if not ons:
                results.append(None)
                continue
            first = ons[0]
            results.append({"from_trigger_ms": (first - last_off) / 1e6 - BEAT_S * 1e3,
                            "after_beat_ms": (first - daw.beat_sent_ns(first)) / 1e6,
                            "xruns_so_far": len(xruns.times_ns)})
        daw.stop()
        time.sleep(0.5)
        left = hanging(outside.messages())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        outside.close()
        xruns.close()
    bridge_stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    answered = [r for r in results if r is not None]
    trigger = [r["from_trigger_ms"] for r in answered]
    late = [r["after_beat_ms"] for r in answered]

    def pct(values, q):
        return float(np.percentile(values, q, method="inverted_cdf")) if values else None

    return {"harmonizer": harmonizer, "calls": len(results), "answered": len(answered), "hanging": len(left),
            "hanging_notes": [f"channel {channel + 1} pitch {pitch}" for channel, pitch in left],
            "xruns": len(xruns.times_ns),
            "from_trigger_ms": {"p50": pct(trigger, 50), "p99": pct(trigger, 99), "max": max(trigger, default=None)},
            "after_beat_ms": {"p50": pct(late, 50), "p99": pct(late, 99), "max": max(late, default=None)},
            "bridge": {k: bridge_stats.get(k) for k in ("answers", "answers_stopped", "engine_errors",
                                                          "p50_answer_ms", "p99_answer_ms", "p99_answer_lateness_ms")},
            "raw": results}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--harmonizers", default="coconet,chords")
    p.add_argument("--out", help="write every figure here (JSON)")
    args = p.parse_args()
    missing = missing_programs(["jackd"])
    if missing:
        raise SystemExit(f"bench_respond: missing {', '.join(missing)} (Debian: jackd2)")
    calls = calls_from_jsb(args.calls)
    server = JackServer(realtime=True).start()
    figures = []
    failed = False
    try:
        print(f"JACK server {server.name}: dummy driver, {server.rate} Hz, {server.period} frames, asynchronous, "
              f"realtime {'granted' if server.realtime_granted else 'not granted'}")
        for harmonizer in args.harmonizers.split(","):
            result = run(server, harmonizer, calls)
            figures.append(result)
            t, late = result["from_trigger_ms"], result["after_beat_ms"]
            print(f"harmonizer {harmonizer}: answered {result['answered']} of {result['calls']}, "
                  f"trigger -> first note p50 {t['p50']:.0f} ms, p99 {t['p99']:.0f} ms (a beat: {BEAT_S * 1e3:.0f} ms); "
                  f"after its beat p50 {late['p50']:.1f} ms, p99 {late['p99']:.1f} ms; hanging {result['hanging']}; "
                  f"xruns {result['xruns']}")
            failed |= result["answered"] < result["calls"] or result["hanging"] > 0
    finally:
        server.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
