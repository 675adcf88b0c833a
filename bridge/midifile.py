"""MIDI files in and out: the melody's top line, the 16th-note grid, the four-voice chorale.

Times inside a `Melody` stay in the source file's ticks, so the output can reproduce the
melody exactly (off-grid timing, velocities, tempo map); only the model sees the grid.
"""
from __future__ import annotations

import io
import math
from bisect import bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from bridge.errors import BadInput
from bridge.score import COMMON_TIME, REST, Score

STEPS_PER_BEAT = 4
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")

# the longest music read: 4,096 beats (34 minutes at 120 bpm); the model's arrays grow with the
# length (a delta time of 2**27 ticks would ask for tens of gigabytes)
MAX_BEATS = 4096

DRUM_CHANNEL = 9  # "channel 10" in the MIDI spec's 1-based numbering
DEFAULT_VELOCITY = 80
TEMPO_MAP_TYPES = ("set_tempo", "time_signature", "key_signature")


@dataclass(frozen=True)
class Note:
    pitch: int
    start: int  # ticks of the source file
    end: int  # > start
    velocity: int


@dataclass(frozen=True)
class Melody:
    notes: tuple[Note, ...]  # the monophonic top line, sorted, non-overlapping
    ticks_per_beat: int
    meta: tuple[tuple[int, mido.MetaMessage], ...]  # (absolute tick, msg): the tempo map
    length_ticks: int  # end of the last note or of the file, whichever is later
    source: str  # the path, for messages


@dataclass
class _TrackScan:
    notes: list[tuple[int, Note]]  # (channel, note)
    meta: list[tuple[int, mido.MetaMessage]]
    end: int


# ---------------------------------------------------------------------------- reading

def read_melody(path, track: int | None = None) -> Melody:
    """The top line of all non-drum tracks (or of track `track`, 0-based) of a MIDI file."""
    scans, ticks_per_beat = _read_file(path)
    if track is None:
        chosen, where = scans, "the file"
    elif 0 <= track < len(scans):
        chosen, where = [scans[track]], f"track {track}"
    else:
        raise BadInput(f"no track {track}: the file has {len(scans)} tracks, numbered from 0", path)

    all_notes = [note for scan in chosen for _, note in scan.notes]
    notes = [note for scan in chosen for channel, note in scan.notes if channel != DRUM_CHANNEL]
    if not notes:
        reason = "only drum notes (channel 10)" if all_notes else "no notes"
        raise BadInput(f"{where} has {reason}", path)

    line = _top_line(notes, min_tail=ticks_per_beat / 8)
    return Melody(
        notes=tuple(line),
        ticks_per_beat=ticks_per_beat,
        meta=_tempo_map(scans),
        length_ticks=max([line[-1].end] + [scan.end for scan in scans]),
        source=str(path),
    )


def read_voices(path) -> Score:
    """A four-voice file back into a Score on the 16th grid (repeated notes struck again).

    Voices are the 4 non-drum tracks with notes, in track order, or, when a single track has
    notes, its 4 channels in channel order.
    """
    scans, ticks_per_beat = _read_file(path)
    voices = _voice_notes(scans, path)
    step = ticks_per_beat / STEPS_PER_BEAT
    columns = [_to_grid(_top_line(notes, min_tail=ticks_per_beat / 8), step) for notes in voices]
    roll = np.full((max(len(c) for c, _ in columns), len(VOICE_NAMES)), REST, dtype=np.int16)
    onsets = np.zeros(roll.shape, dtype=bool)
    for voice, (column, onset_ticks) in enumerate(columns):
        roll[: len(column), voice] = column
        onsets[: len(column), voice] = _onsets(len(column), onset_ticks)
    return Score.of(roll, onsets)


def _voice_notes(scans: list[_TrackScan], path) -> list[list[Note]]:
    return [[note for channel, note in scans[track].notes if channel in channels]   # drums are in no voice's channels
            for track, channels in _voice_places(scans, path)]


def _voice_places(scans: list[_TrackScan], path) -> list[tuple[int, tuple[int, ...]]]:
    """Where each of the four voices lies: (track index, its non-drum channels)."""
    def channels(scan: _TrackScan) -> tuple[int, ...]:
        return tuple(sorted({ch for ch, _ in scan.notes if ch != DRUM_CHANNEL}))

    with_notes = [index for index, scan in enumerate(scans) if channels(scan)]
    if len(with_notes) == len(VOICE_NAMES):
        return [(index, channels(scans[index])) for index in with_notes]
    if len(with_notes) == 1 and len(channels(scans[with_notes[0]])) == len(VOICE_NAMES):
        return [(with_notes[0], (channel,)) for channel in channels(scans[with_notes[0]])]
    raise BadInput(
        f"expected 4 voices (4 tracks with notes, or one track on 4 channels), "
        f"found {len(with_notes)} tracks with notes",
        path,
    )


def _read_file(path) -> tuple[list[_TrackScan], int]:
    """Every track scanned into absolute-tick notes and meta; the (possibly scaled) ticks per beat."""
    midi = _load(path)
    ticks_per_beat = midi.ticks_per_beat
    if ticks_per_beat <= 0:
        # mido reads the division as signed: negative is SMPTE (frames per second) timing.
        raise BadInput("SMPTE time division is not supported (only ticks per beat)", path)
    # Below 4 ticks per beat a 16th has no tick of its own; a whole multiple keeps every
    # position exact, and the output is written at the same scaled resolution.
    scale = STEPS_PER_BEAT if ticks_per_beat < STEPS_PER_BEAT else 1
    scans = [_scan_track(track, scale) for track in midi.tracks]
    last = max((note.end for scan in scans for _, note in scan.notes), default=0)
    if last > MAX_BEATS * ticks_per_beat * scale:
        raise BadInput(f"the notes last {last / (ticks_per_beat * scale):,.0f} beats; at most {MAX_BEATS:,} "
                       f"can be read (a delta time in the file may be wrong)", path)
    return scans, ticks_per_beat * scale


def _load(path) -> mido.MidiFile:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read: {error.strerror or error}", path) from error
    if not data:
        raise BadInput("empty file", path)
    try:
        return mido.MidiFile(file=io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - a malformed file can fail anywhere inside mido
        detail = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
        raise BadInput(f"not a readable MIDI file ({detail})", path) from error


def _scan_track(track: mido.MidiTrack, scale: int) -> _TrackScan:
    notes: list[tuple[int, Note]] = []
    meta: list[tuple[int, mido.MetaMessage]] = []
    # Same-key notes that overlap are paired first-on, first-off.
    sounding: dict[tuple[int, int], deque] = defaultdict(deque)
    tick = 0

    def close(channel, pitch, end):
        start, velocity = sounding[channel, pitch].popleft()
        if end > start:
            notes.append((channel, Note(pitch, start, end, velocity)))

    for msg in track:
        tick += msg.time * scale
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.channel, msg.note].append((tick, msg.velocity))
        elif msg.type in ("note_on", "note_off"):
            if sounding[msg.channel, msg.note]:
                close(msg.channel, msg.note, tick)
        elif msg.type in TEMPO_MAP_TYPES:
            meta.append((tick, msg.copy(time=0)))
    # Notes never switched off last to the end of their track.
    for (channel, pitch), queue in sounding.items():
        while queue:
            close(channel, pitch, tick)
    notes.sort(key=lambda item: (item[1].start, item[1].pitch))
    return _TrackScan(notes, meta, tick)


def _tempo_map(scans: list[_TrackScan]) -> tuple[tuple[int, mido.MetaMessage], ...]:
    merged: list[tuple[int, mido.MetaMessage]] = []
    seen = set()
    for scan in scans:
        for tick, msg in scan.meta:
            # Some sequencers repeat the tempo map in every track; once is enough.
            key = (tick, tuple(msg.bytes()))
            if key not in seen:
                seen.add(key)
                merged.append((tick, msg))
    merged.sort(key=lambda item: item[0])  # stable: same-tick events keep file order
    return tuple(merged)


def _top_line(notes: list[Note], min_tail: float) -> list[Note]:
    """The highest sounding note at each moment, as non-overlapping notes.

    A lower note that becomes the top when a higher one ends starts at that moment; such tails
    shorter than `min_tail` are release slop of a chord, not melody, and are dropped.
    """
    by_start = sorted(notes, key=lambda n: n.start)
    times = sorted({n.start for n in notes} | {n.end for n in notes})
    line: list[Note] = []
    sounding: list[Note] = []
    current = None  # (pitch, start, velocity, is_attack) of the line note being built
    next_note = 0
    for time in times:
        sounding = [n for n in sounding if n.end > time]
        attacks = []
        while next_note < len(by_start) and by_start[next_note].start == time:
            attacks.append(by_start[next_note])
            next_note += 1
        sounding += attacks
        top = max(sounding, key=lambda n: (n.pitch, n.start), default=None)
        top_attack = max((n for n in attacks if top and n.pitch == top.pitch),
                         key=lambda n: n.velocity, default=None)

        if current and (top is None or top.pitch != current[0] or top_attack):
            pitch, start, velocity, is_attack = current
            if is_attack or time - start >= min_tail:
                line.append(Note(pitch, start, time, velocity))
            current = None
        if top and current is None:
            source = top_attack or top
            current = (top.pitch, time, source.velocity, top_attack is not None)
    return line


# ---------------------------------------------------------------------------- the grid

def quantize(melody: Melody) -> tuple[Score, np.ndarray]:
    """-> the melody as a one-voice Score on the 16th grid (a repeated note struck again), and
    step_ticks (T+1,) int64: each step's start tick.

    Steps where a melody note starts begin at that note's real tick, and the last entry is the
    melody's real end, so harmony written on these ticks moves exactly with the melody as played.
    """
    step = melody.ticks_per_beat / STEPS_PER_BEAT
    soprano, onset_ticks = _to_grid(melody.notes, step)
    end = melody.notes[-1].end if melody.notes else 0
    return Score.melody(soprano, _onsets(len(soprano), onset_ticks)), _step_ticks(len(soprano), step, onset_ticks, end)


def _onsets(steps: int, onset_ticks: dict[int, int]) -> np.ndarray:
    onsets = np.zeros(steps, dtype=bool)
    onsets[list(onset_ticks)] = True
    return onsets


def _to_grid(notes, step: float) -> tuple[np.ndarray, dict[int, int]]:
    """Monophonic notes -> (T,) pitches per step, and {onset step: real start tick}."""
    spans = []
    for note in notes:
        first, stop = _nearest_step(note.start, step), _nearest_step(note.end, step)
        spans.append((note, first, max(stop, first + 1)))
    grid = np.full(max((stop for _, _, stop in spans), default=0), REST, dtype=np.int16)
    onset_ticks = {}
    # Rounding is monotonic, so spans can only collide on a shared onset step: writing in
    # time order lets the later onset win it.
    for note, first, stop in spans:
        grid[first:stop] = note.pitch
        onset_ticks[first] = note.start
    return grid, onset_ticks


def _step_ticks(steps: int, step: float, onset_ticks: dict[int, int], end: int) -> np.ndarray:
    ticks = _grid_ticks(steps, step)
    for t in sorted(onset_ticks):
        real = onset_ticks[t]
        # Keep the ticks strictly increasing so that no harmony note gets zero length.
        if (t == 0 or ticks[t - 1] < real) and real < ticks[t + 1]:
            ticks[t] = real
    if steps and end > ticks[steps - 1]:
        ticks[steps] = end
    return ticks


def _grid_ticks(steps: int, step: float) -> np.ndarray:
    return np.floor(np.arange(steps + 1) * step + 0.5).astype(np.int64)


def _nearest_step(tick: int, step: float) -> int:
    return math.floor(tick / step + 0.5)


# ---------------------------------------------------------------------------- writing

def write_chorale(path, score: Score, melody: Melody, step_ticks: np.ndarray) -> None:
    """Four tracks, Soprano..Bass on channels 1-4: the melody as played, the score's alto, tenor
    and bass under it (a note per onset)."""
    step_ticks = np.asarray(step_ticks)
    if score.pitches.shape[1] != len(VOICE_NAMES) or len(step_ticks) != len(score) + 1:
        raise ValueError(f"score {score.pitches.shape} and step_ticks {step_ticks.shape} do not match")

    starts = [note.start for note in melody.notes]

    def velocity_at(tick):
        index = bisect_right(starts, tick) - 1
        return melody.notes[index].velocity if index >= 0 else DEFAULT_VELOCITY

    voices = [list(melody.notes)]
    for voice in range(1, len(VOICE_NAMES)):
        voices.append([
            Note(pitch, int(step_ticks[t0]), int(step_ticks[t1]), velocity_at(step_ticks[t0]))
            for pitch, t0, t1 in score.note_runs(voice)
        ])
    end = max([melody.length_ticks, int(step_ticks[-1])] + [tick for tick, _ in melody.meta])

    midi = mido.MidiFile(type=1, ticks_per_beat=melody.ticks_per_beat)
    for channel, (name, notes) in enumerate(zip(VOICE_NAMES, voices)):
        meta = melody.meta if channel == 0 else ()
        midi.tracks.append(_voice_track(name, channel, notes, meta, end))
    # Everything above can fail; only now is the file touched.
    midi.save(path)


def meter_at_start(melody: Melody) -> tuple[int, int]:
    """(16ths a bar, the first bar's start step) from the time signature at the file's start;
    COMMON_TIME (4/4 from the first tick) when there is none."""
    for tick, msg in melody.meta:
        if tick > 0:
            break
        if msg.type == "time_signature":
            sixteenths = msg.numerator * 16 / msg.denominator
            if sixteenths == int(sixteenths) and 1 <= sixteenths <= 64:
                return int(sixteenths), 0
    return COMMON_TIME


def write_continuation(path, source, score: Score, start: int, voices: int) -> None:
    """The MIDI file `source` exactly as it is, with the steps from `start` of the score's first
    `voices` voices after it: one new track per voice ("Continuation Soprano", ...), on channels
    1-4, on the source's 16th grid from its first tick."""
    midi = _load(source)
    if midi.type == 2:
        raise BadInput("a type-2 MIDI file (independent sequences) cannot be continued", source)
    midi.type = 1
    step = midi.ticks_per_beat / STEPS_PER_BEAT
    ticks = _grid_ticks(len(score), step)
    end = int(ticks[-1])
    for voice in range(voices):
        notes = [Note(p, int(ticks[t0]), int(ticks[t1]), DEFAULT_VELOCITY)
                 for p, t0, t1 in score.note_runs(voice) if t0 >= start]
        midi.tracks.append(_voice_track(f"Continuation {VOICE_NAMES[voice]}", voice, notes, (), end))
    midi.save(path)


def write_regenerated(path, source, score: Score, redrawn: np.ndarray) -> None:
    """The four-voice MIDI file `source` with, in each voice, the notes that begin on a
    `redrawn` (T, 4) cell of its 16th grid taken out and the score's notes on those cells put in
    (on the grid, each ending before the voice's next note of the source begins); every other
    event exactly as it was."""
    midi = _load(source)
    if midi.ticks_per_beat < STEPS_PER_BEAT:
        raise BadInput(f"{midi.ticks_per_beat} ticks a beat is too coarse for a 16th grid of its own", source)
    scans = [_scan_track(track, 1) for track in midi.tracks]
    step = midi.ticks_per_beat / STEPS_PER_BEAT
    ticks = _grid_ticks(len(score), step)
    redrawn = np.asarray(redrawn, dtype=bool)

    def is_redrawn(tick: int, voice: int) -> bool:
        t = _nearest_step(tick, step)
        return 0 <= t < len(redrawn) and bool(redrawn[t, voice])

    for voice, (track_index, channels) in enumerate(_voice_places(scans, source)):
        kept = [note for channel, note in scans[track_index].notes
                if channel in channels and not is_redrawn(note.start, voice)]
        taken = [note for channel, note in scans[track_index].notes
                 if channel in channels and is_redrawn(note.start, voice)]
        velocity = round(np.mean([note.velocity for note in taken])) if taken else DEFAULT_VELOCITY
        new_notes = []
        for pitch, first, stop in _redrawn_runs(score, redrawn, voice):
            start, end = int(ticks[first]), int(ticks[stop])
            # the source's own notes either side keep their real ticks: the new note fits between
            end = min([end] + [note.start for note in kept if note.start > start])
            start = max([start] + [note.end for note in kept if note.end <= end and note.start < start])
            if end > start:
                new_notes.append(Note(pitch, start, end, velocity))
        midi.tracks[track_index] = _spliced(midi.tracks[track_index], channels,
                                            lambda tick, voice=voice: is_redrawn(tick, voice), new_notes, channels[0])
    midi.save(path)


def _redrawn_runs(score: Score, redrawn: np.ndarray, voice: int) -> list[tuple[int, int, int]]:
    """(pitch, first step, stop step) of the score's notes on one voice's redrawn cells: a note
    ends where its pitch changes, the voice strikes again, or the redrawn cells end."""
    pitches, onsets, cells = score.pitches[:, voice], score.onsets[:, voice], redrawn[:, voice]
    runs: list[tuple[int, int, int]] = []
    for t in range(len(pitches)):
        if not cells[t] or pitches[t] < 0:
            continue
        if runs and runs[-1][2] == t and runs[-1][0] == pitches[t] and not onsets[t]:
            runs[-1] = (runs[-1][0], runs[-1][1], t + 1)
        else:
            runs.append((int(pitches[t]), t, t + 1))
    return runs


def _spliced(track: mido.MidiTrack, channels: tuple[int, ...], taken_out, notes: list[Note],
             channel: int) -> mido.MidiTrack:
    """The track without its notes on `channels` whose start tick `taken_out(tick)` says, with
    `notes` (on `channel`) in; everything else in its place."""
    events = []                      # (tick, order, message): same-tick events keep the file's order
    dropping: dict[tuple[int, int], deque] = defaultdict(deque)   # per key, first on first off: dropped?
    tick, end = 0, 0
    for index, msg in enumerate(track):
        tick += msg.time
        if msg.type == "end_of_track":
            end = tick
            continue
        if msg.type in ("note_on", "note_off") and msg.channel in channels:
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                drop = taken_out(tick)
                dropping[key].append(drop)
                if drop:
                    continue
            elif dropping[key] and dropping[key].popleft():
                continue
        events.append((tick, 1, index, msg))
    for note in notes:
        events.append((note.end, 0, 0, mido.Message("note_off", channel=channel, note=note.pitch)))
        events.append((note.start, 2, 0, mido.Message("note_on", channel=channel, note=note.pitch,
                                                      velocity=note.velocity)))
    events.sort(key=lambda event: event[:3])
    spliced = mido.MidiTrack()
    now = 0
    for tick, _, _, msg in events:
        spliced.append(msg.copy(time=tick - now))
        now = tick
    spliced.append(mido.MetaMessage("end_of_track", time=max(end - now, 0)))
    return spliced


def write_melody(path, pitches_per_step, ticks_per_beat=480, bpm=100.0, velocity=80) -> None:
    """A one-track 4/4 melody file from (T,) MIDI pitches per 16th step (REST = silence)."""
    pitches = np.asarray(pitches_per_step)
    ticks = _grid_ticks(len(pitches), ticks_per_beat / STEPS_PER_BEAT)
    notes = [Note(p, int(ticks[t0]), int(ticks[t1]), velocity) for p, t0, t1 in Score.melody(pitches).note_runs(0)]
    meta = (
        (0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))),
        (0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
    )
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(_voice_track("Melody", 0, notes, meta, int(ticks[-1])))
    midi.save(path)


def write_voices(path, score: Score, ticks_per_beat: int = 480, bpm: float = 100.0,
                 velocity: int = DEFAULT_VELOCITY) -> None:
    """Four tracks, Soprano..Bass on channels 1-4, from a four-voice Score on the 16th grid (4/4
    at `bpm`): for music with no source melody to keep, such as `bachbridge generate`'s."""
    if score.pitches.shape[1] != len(VOICE_NAMES):
        raise ValueError(f"score must have {len(VOICE_NAMES)} voices, not {score.pitches.shape[1]}")
    ticks = _grid_ticks(len(score), ticks_per_beat / STEPS_PER_BEAT)
    meta = (
        (0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))),
        (0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
    )
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for channel, name in enumerate(VOICE_NAMES):
        notes = [Note(p, int(ticks[t0]), int(ticks[t1]), velocity) for p, t0, t1 in score.note_runs(channel)]
        midi.tracks.append(_voice_track(name, channel, notes, meta if channel == 0 else (), int(ticks[-1])))
    midi.save(path)


def _voice_track(name, channel, notes, meta, end) -> mido.MidiTrack:
    # At a shared tick: tempo map first, then note-offs before note-ons, so the voice never
    # has two notes on at once and new notes hear the new tempo.
    events = [(tick, 0, msg) for tick, msg in meta]
    for note in notes:
        events.append((note.end, 1, mido.Message("note_off", channel=channel, note=note.pitch)))
        events.append((note.start, 2, mido.Message(
            "note_on", channel=channel, note=note.pitch, velocity=note.velocity)))
    events.sort(key=lambda event: (event[0], event[1]))

    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end - now, 0)))
    return track
