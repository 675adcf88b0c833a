"""The one record of what sounds on a MIDI output, kept by the one thread that writes to it.

Every note message goes through `Sounding.send(data, source)`. A key (channel, pitch) may be
held by several voices at once (alto and tenor in unison on one channel, the melody's echo and a
harmony voice, a file playing beside the live harmony): each note-on strikes the key (a key that
already sounds is struck again: note-off, then note-on, so the wire never carries two note-ons
of one key), and its note-off goes out when the last holder ends it, so one voice's note-off
never silences another's note.

`source` names who holds a note ('live' for the bridge's players, 'file' for a file playing out
of the bridge): `release(source)` ends exactly that source's notes (a mode or engine change, a
file stopped), `all_notes_off()` everything (panic, close), sustain pedal up and CC 123 included.
A note-off for a note its source does not hold is dropped: it would end someone else's note.

Plain bookkeeping, no port and no lock in it: the writer owns it (see bridge/live.py's realtime
contract), and `write(bytes)` is whatever puts bytes on the wire.
"""
from __future__ import annotations

from collections.abc import Callable

NOTE_OFF, NOTE_ON, CONTROL = 0x80, 0x90, 0xB0
SUSTAIN, ALL_NOTES_OFF = 64, 123


class Sounding:
    def __init__(self, write: Callable[[bytes], None]):
        self._write = write
        self._holders: dict[tuple[int, int], dict[str, int]] = {}  # key -> {source: note-ons held}
        self._sustained: set[int] = set()   # channels with the sustain pedal down
        self.channels: set[int] = set()     # every channel written on

    def send(self, data: bytes, source: str = "") -> bool:
        """Write one short message (already validated), keeping the record. Returns whether it
        went out (a note-off while others hold the key, or for a note `source` does not hold,
        does not)."""
        status = data[0]
        if status >= 0xF0:
            self._write(data)
            return True
        kind, channel = status & 0xF0, status & 0x0F
        self.channels.add(channel)
        if kind == NOTE_ON and data[2] > 0:
            holders = self._holders.setdefault((channel, data[1]), {})
            if holders:
                self._write(bytes((NOTE_OFF | channel, data[1], 0)))
            holders[source] = holders.get(source, 0) + 1
            self._write(data)
            return True
        if kind == NOTE_OFF or kind == NOTE_ON:
            return self._end((channel, data[1]), source, 1, data)
        if kind == CONTROL and data[1] == SUSTAIN:
            (self._sustained.add if data[2] >= 64 else self._sustained.discard)(channel)
        self._write(data)
        return True

    def _end(self, key: tuple[int, int], source: str, count: int, data: bytes | None = None) -> bool:
        holders = self._holders.get(key)
        if not holders or source not in holders:
            return False
        left = holders[source] - count
        if left > 0:
            holders[source] = left
            return False
        del holders[source]
        if holders:
            return False
        del self._holders[key]
        self._write(data if data is not None else bytes((NOTE_OFF | key[0], key[1], 0)))
        return True

    def release(self, source: str = "") -> int:
        """Note-offs for every note `source` holds (those that no other source holds go out).
        Returns the number of note-offs written."""
        held = [(key, holders[source]) for key, holders in sorted(self._holders.items()) if source in holders]
        return sum(self._end(key, source, count) for key, count in held)

    def silence(self, keys) -> int:
        """Note-offs, once more, for those of `keys` that sound no more: for a listener that may
        have missed the first ones (a JACK cycle dropped while the graph changed). A note-off for
        a note already ended is harmless; one for a key that sounds again would not be, so those
        are left out. Returns the number written."""
        written = 0
        for channel, pitch in sorted(keys):
            if (channel, pitch) not in self._holders:
                self._write(bytes((NOTE_OFF | channel, pitch, 0)))
                written += 1
        return written

    def all_notes_off(self, channels=()) -> int:
        """Note-off for every sounding key, sustain pedal up where it was down, then CC 123 on
        every channel written on and each of `channels` (0-15). Returns the messages written."""
        chosen = sorted(self.channels.union(channels))
        bad = [c for c in chosen if not (isinstance(c, int) and 0 <= c <= 15)]
        if bad:
            raise ValueError(f"MIDI channels are 0-15, not {bad}")
        written = 0
        for channel, pitch in sorted(self._holders):
            self._write(bytes((NOTE_OFF | channel, pitch, 0)))
            written += 1
        self._holders.clear()
        for channel in sorted(self._sustained):
            self._write(bytes((CONTROL | channel, SUSTAIN, 0)))
            written += 1
        self._sustained.clear()
        for channel in chosen:
            self._write(bytes((CONTROL | channel, ALL_NOTES_OFF, 0)))
            written += 1
        return written

    def sounding(self, source: str | None = None) -> dict[tuple[int, int], int]:
        """{(channel, pitch): note-ons held} of every source, or of one."""
        if source is None:
            return {key: sum(h.values()) for key, h in self._holders.items()}
        return {key: h[source] for key, h in self._holders.items() if source in h}
