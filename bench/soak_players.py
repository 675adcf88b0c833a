"""The soak's two players, each a process of its own, started and talked to by bench/bench_soak.py
(whose docstring tells the evening):

    python bench/soak_players.py --bridge ENGINE,ENGINE   # the bridge, its knobs turned as told on stdin
    python bench/soak_players.py --daw                    # the DAW: melody, junk and marks on JACK
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # soak_record reads the record with tests/jackrig.py

from soak_record import (  # noqa: E402  (what the record is counted by)
    BPM, CC, ECHO_CHANNEL, HARMONY_CHANNELS, LOOKAHEAD_BEATS, MARK_CHANNEL, MELODY_CHANNEL, NOTE_OFF, NOTE_ON)

SIXTEENTH_S = 60.0 / BPM / 4           # 93.75 ms
NOTE_HELD = 0.75                       # of a 16th: the DAW plays detached, so each onset is struck afresh
VELOCITIES = [70, 78, 86, 94, 102]     # the DAW's, note after note: phrase mode's answers are told apart by them


# a chorale-like line in the soprano's range, 2 bars of 16ths, played over and over
MELODY = [67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79, 78, 76, 74, 72,
          71, 72, 74, 76, 74, 72, 71, 69, 67, 66, 67, 69, 71, 69, 67, 67]
JUNK_EVERY = 11                        # notes between two bursts of junk
JUNK_AFTER_S = 0.035                   # after the onset: done (and any unended SysEx ended) long before the next
# what the junk port sends, in one burst: nothing the bridge may take for a note
JUNK = [
    [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7],                      # a SysEx identity request
    [0xF0, 0x43, *([0x11] * 300), 0xF7],                       # a long SysEx
    [0xF0, 0x41, 0x10, 0x42],                                  # a SysEx that never ends
    [0xF7], [0xF4], [0xF5], [0xF9], [0xFD], [0xFE], [0xFF],    # stray end, undefined, sensing, reset
    [0x40], [0x12, 0x34],                                      # data bytes with no status
    [0x90, 0x40], [0x93],                                      # truncated note-ons
    [0x90, 0xC8, 0x50], [0x91, 0x40, 0x9F], [0x85, 200, 1],    # note data out of range
    [0xB0, 7, 100], [0xC3, 12], [0xE0, 0, 64], [0xD2, 30], [0xA0, 60, 10],   # channel messages
    [0xF2, 0x80, 0x80], [0xF1, 0x71], [0xF6],                  # a bad song position, MTC, tune request
    *([[0xF8]] * 30),                                          # a clock flood
]
BARE_WINDOW_NS = 50_000_000            # see BareOnsets


# ---------------------------------------------------------------- the bridge's process

def bridge_process(engine_names: list[str]) -> None:
    """Run a Bridge on JACK and turn its knobs as told on stdin, one JSON object a line:
    {"temperature": T} | {"mode": "note"|"phrase"} | {"engine": NAME} | {"stats": true}
    | {"monitor_since": MONOTONIC_S} (the notes as they sounded since, as the bridge's monitor
    shows them) | {"quit": true}; each is answered by one JSON line on stdout once done."""
    import faulthandler

    from bridge.engines import load_engine
    from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig, warm_up
    from bridge.live.config import checked_snapshot

    faulthandler.register(signal.SIGUSR1)   # `kill -USR1 PID`: every thread's stack into the log

    def say(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    engines = {name: load_engine(name, threads=1) for name in engine_names}
    config = LiveConfig(mode="note", clock="auto", bpm=BPM, lookahead_beats=LOOKAHEAD_BEATS,
                        echo_channel=ECHO_CHANNEL, channels=HARMONY_CHANNELS)
    for engine in engines.values():   # every engine warm for both modes before the first note
        for mode in ("note", "phrase"):
            warm_up(checked_snapshot(engine, config.replace(mode=mode), LIVE_SETTINGS))
    bridge = Bridge(engines[engine_names[0]], config, LIVE_SETTINGS, api="jack")
    log_event_errors(bridge)
    bridge.start()
    bare = BareOnsets(bridge.monitor)
    say({"ready": True, "pid": os.getpid(), "ports_up_s": bridge.ports_up_s,
         "worker_realtime": bridge.worker_realtime})
    try:
        for line in sys.stdin:
            command = json.loads(line)
            bare.read()
            if "temperature" in command:
                bridge.update(settings=bridge.snapshot.settings.replace(temperature=command["temperature"]))
            elif "mode" in command:
                bridge.update(config=bridge.snapshot.config.replace(mode=command["mode"]))
            elif "engine" in command:
                bridge.update(engine=engines[command["engine"]])
            elif "stats" in command:
                say({"stats": stats_of(bridge, bare)})
                continue
            elif "monitor_since" in command:   # time.monotonic() seconds: the monitor's clock
                since_ns = command["monitor_since"] * 1e9
                say({"monitor": [event for event in bare.recent if event[0] >= since_ns]})
                continue
            elif "quit" in command:
                break
            say({"ok": True})
    finally:
        bridge.close()
    bare.read()
    say({"closed": True, "stats": stats_of(bridge, bare)})


def log_event_errors(bridge) -> None:
    """Each error the bridge counts as an event error (and goes on), with its traceback, into this
    process's stderr (the bridge's log): the bridge itself keeps only the last one's text."""
    count = getattr(bridge, "_count_error", None)
    if count is None:
        return

    def count_and_log(error: Exception) -> None:
        sys.stderr.write(f"event error at {time.monotonic():.3f}:\n" + "".join(traceback.format_exception(error)))
        count(error)
    bridge._count_error = count_and_log


def stats_of(bridge, bare: "BareOnsets") -> dict:
    snapshot = bridge.stats.snapshot()
    return {**asdict(snapshot), "speculation_hit_rate": snapshot.speculation_hit_rate, "bare_onsets": bare.found}


class BareOnsets:
    """The melody onsets the bridge itself played bare, from its monitor (what a window draws:
    in note mode the harmony right after the melody note, in phrase mode each when it sounds): no
    harmony note-on within BARE_WINDOW_NS of the melody note-on, nor past its neighbours. `found`:
    [(perf_counter_ns, pitch)]. An answer the record misses and the bridge never sent is the
    bridge's own doing, not an answer lost on its way out."""

    def __init__(self, monitor):
        self.monitor = monitor
        self.found: list[tuple[int, int]] = []
        self.recent: collections.deque = collections.deque(maxlen=8192)   # every monitor event, lately
        self._pending: list[tuple[int, int, int | None]] = []   # (t_ns, pitch, previous melody t_ns)
        self._harmony: collections.deque = collections.deque(maxlen=256)   # recent harmony note-ons, t_ns
        self._last_melody: int | None = None

    def read(self) -> None:
        while True:
            try:
                event = self.monitor.popleft()
            except IndexError:
                break
            self.recent.append(tuple(event))
            if event.velocity == 0:
                continue
            if event.voice == 0:
                self._decide(event.t_ns, event.t_ns)
                self._pending.append((event.t_ns, event.pitch, self._last_melody))
                self._last_melody = event.t_ns
            else:
                self._harmony.append(event.t_ns)
        self._decide(time.perf_counter_ns() - 2 * BARE_WINDOW_NS, None)

    def _decide(self, now: int, next_melody: int | None) -> None:
        """Decide the pending melody notes whose window closed by `now` (all, when a next melody
        note came at `next_melody`)."""
        keep = []
        for t, pitch, previous in self._pending:
            if next_melody is None and t + BARE_WINDOW_NS > now:
                keep.append((t, pitch, previous))
                continue
            lo = t - BARE_WINDOW_NS if previous is None else max(previous + 1, t - BARE_WINDOW_NS)
            hi = t + BARE_WINDOW_NS if next_melody is None else min(next_melody - 1, t + BARE_WINDOW_NS)
            if not any(lo <= h <= hi for h in self._harmony) and len(self.found) < 10_000:
                self.found.append((t, pitch))
        self._pending = keep


# ---------------------------------------------------------------- the DAW's process

def daw_process() -> None:
    """Ports 'melody', 'junk' and 'marks' (three python-rtmidi JACK clients named 'daw'). Prints
    'ready'; then on stdin: 'play' (16ths until 'stop'; prints 'on K' after each note-on), 'mark
    CONTROLLER VALUE' (a CC on MARK_CHANNEL out of 'marks'; prints 'marked'), 'stop' (the held
    note ends, prints 'stopped', exits)."""
    import rtmidi

    ports = {}
    for name in ("melody", "junk", "marks"):
        port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="daw")
        port.open_virtual_port(name)
        ports[name] = port
    out_lock = threading.Lock()   # stdout: the player's lines and the command replies

    def say(text: str) -> None:
        with out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    stop = threading.Event()

    def play() -> None:
        melody, junk = ports["melody"], ports["junk"]
        start = time.perf_counter()
        k = 0
        while not stop.is_set():
            onset = start + k * SIXTEENTH_S
            _sleep_until(onset)
            pitch = MELODY[k % len(MELODY)]
            melody.send_message([NOTE_ON | MELODY_CHANNEL, pitch, VELOCITIES[k % len(VELOCITIES)]])
            say(f"on {k}")
            if k % JUNK_EVERY == JUNK_EVERY - 1:
                _sleep_until(onset + JUNK_AFTER_S)
                for message in JUNK:
                    junk.send_message(message)
            _sleep_until(onset + NOTE_HELD * SIXTEENTH_S)
            melody.send_message([NOTE_OFF | MELODY_CHANNEL, pitch, 0])
            k += 1

    player = threading.Thread(target=play, daemon=True)
    say("ready")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "play" and not player.is_alive():
            player.start()
        elif words[0] == "mark":
            ports["marks"].send_message([CC | MARK_CHANNEL, int(words[1]), int(words[2])])
            say("marked")
        elif words[0] == "stop":
            break
    stop.set()
    if player.is_alive():
        player.join(1.0)   # the note it holds ends with it
    time.sleep(0.05)       # the last note-off leaves with the next JACK cycles
    say("stopped")
    for port in ports.values():
        port.close_port()
        port.delete()


def _sleep_until(t: float) -> None:
    while (left := t - time.perf_counter()) > 0:
        time.sleep(min(left, 0.002))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--bridge", metavar="ENGINES", help="the bridge, with these engines (comma-separated)")
    role.add_argument("--daw", action="store_true", help="the DAW")
    args = parser.parse_args(argv)
    if args.bridge:
        bridge_process(args.bridge.split(","))
    else:
        daw_process()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
