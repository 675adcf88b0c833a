"""A MIDI file played out of the bridge's output, by the worker (the port's one writer)."""
from __future__ import annotations

from pathlib import Path

from bridge.live.player import Outlet

FILE_SOURCE = "file"


def file_events(path: str | Path) -> list[tuple[int, bytes]]:
    """Every short message of a MIDI file (all tracks, tempo map applied) as (ns from the
    start, bytes); meta events and SysEx left out. Raises what mido raises for a bad file."""
    import mido  # offline only: mido stays out of the live start-up

    events, t = [], 0.0
    for message in mido.MidiFile(path):
        t += message.time
        if not message.is_meta and message.type != "sysex":
            events.append((int(t * 1e9), bytes(message.bytes())))
    return events


class FilePlayback:
    """Sends `events` [(ns from the start, bytes)] from `start_ns` on, each when it is due, as the
    'file' source; `stop()` ends every note it started (the live harmony's own are left alone)."""

    def __init__(self, out: Outlet, events: list[tuple[int, bytes]], start_ns: int):
        self.out = out
        self.events = events
        self.start_ns = start_ns
        self.next = 0

    @property
    def done(self) -> bool:
        return self.next >= len(self.events)

    def next_due_ns(self) -> int | None:
        return None if self.done else self.start_ns + self.events[self.next][0]

    def tick(self, now_ns: int) -> None:
        events, start = self.events, self.start_ns
        while self.next < len(events) and start + events[self.next][0] <= now_ns:
            data = events[self.next][1]
            self.next += 1
            try:
                self.out.send(data)
            except ValueError:  # not a message a port can send (file_events keeps those out)
                pass

    def stop(self) -> None:
        self.next = len(self.events)
        self.out.release()
