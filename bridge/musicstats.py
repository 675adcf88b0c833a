"""Style statistics of four-part writing, and the "musical" bar of PRODUCT.md.

Numpy only (no torch, no numba), so the bench, the tests and the bridge can all use it.

A roll is an int (T, 4) array of MIDI pitches, columns soprano, alto, tenor, bass, on a 16th-note
grid, -1 = silent (the format of `models.data.load_jsb16` and `Engine.harmonize`). Every
statistic takes one roll or a list of rolls and pools the counts over all of them (the rate of the
whole corpus, not the mean of per-chorale rates), so long chorales weigh more than short ones.

Definitions
-----------
sounding step
    A step at which all four voices sound. Steps with any silent voice are left out of every
    statistic, and they break the chord sequence (no chord change is counted across them).
sonority, chord change (`chord_changes`)
    The sonorities are the 4-voice pitch tuples at the sounding steps where the tuple differs from
    the previous step's; the duration of a sonority is the number of steps it lasts. A chord change
    is a pair of consecutive sonorities (within one run of sounding steps). The roll has no ties,
    so a repeated chord is indistinguishable from a held one and is not a change.
parallels (consecutive perfect fifths and octaves) per 100 chord changes
    For each chord change and each of the 6 voice pairs: both voices change pitch, and the
    interval between them, |upper - lower| mod 12, is 7 (a perfect fifth, twelfth, ...) in both
    sonorities, or 0 (unison, octave, double octave, ...) in both. Each such (change, pair) is one
    occurrence; the rate is occurrences / chord changes x 100.

    Which motions count: the bar's figure ("parallels") counts both similar motion (both voices
    move the same way: parallel fifths and octaves proper) and contrary motion (fifth to twelfth,
    octave to unison by contrary motion: "consecutive" or "antiparallel" perfects, which the
    strict rules forbid too). Counted that way, Bach's 77 JSB test chorales give 0.58 per 100
    chord changes (41 occurrences in 7068 changes; train split 0.61, valid 0.55, all 382
    chorales 0.59), within sampling noise of the 0.71 PRODUCT.md quotes (41 +- 6 events).
    Similar motion alone gives 0.27 on the test split (19 occurrences; train 0.31, all 0.30),
    well outside it, so that cannot be how the 0.71 was measured; it is reported as
    `parallels_similar`, for information, and is not part of the bar. (Other variants, for
    the record, test / train: similar motion plus "unequal" fifths d5 -> P5 0.52 / 0.59; similar
    and contrary plus d5 -> P5 0.86 / 0.90; simple intervals only, no compounds, 0.21 / 0.23;
    similar motion between beat-sampled chords, every 4th step, 1.85 / 2.18.)
    Compound intervals count (mod 12); unisons count as octaves (dropping unisons changes Bach's
    test figure by nothing and the train figure by 0.01). Oblique motion never counts; crossed
    voices are measured by the absolute interval, so a crossed fourth is a fourth.
voice crossing
    Share of sounding steps where some adjacent pair is out of order: S < A, A < T or T < B
    (a unison is not a crossing).
chord-type mix
    Each sonority's pitch-class set is classified as one of `CHORD_TYPES`:
      major, minor, diminished, augmented: the triad's three pitch classes, in any voicing;
      dominant7: {0, 4, 7, 10} from the root; other7: minor 7th {0, 3, 7, 10} (the same set as
        a major triad with added sixth), half-diminished {0, 3, 6, 10}, diminished 7th
        {0, 3, 6, 9}, major 7th {0, 4, 7, 11}. A seventh chord without its fifth (root, third and
        seventh: {0, 4, 10}, {0, 3, 10}, {0, 4, 11}) counts as that seventh chord, because four
        voices often leave the fifth out (Bach's cadential V7 above all); a diminished 7th with a
        tone missing is a diminished triad;
      incomplete: one or two distinct pitch classes (open fifth, bare octave or third, ...);
      other: every other set (suspensions, passing and neighbour tones, added-note sonorities).
    The mix is the share of sounding steps in each class: weighted by duration in steps, so
    shares sum to 1.
seventh chords
    Share of sounding steps (duration-weighted, as the mix) whose sonority is a seventh chord:
    mix["dominant7"] + mix["other7"].
harmony changes per beat
    Chord changes / beats, a beat being 4 sounding steps (a quarter note).
bass stepwise motion
    Over consecutive steps where the bass sounds at both, the bass pitch changes; the share of
    those changes with |interval| <= 2 semitones. (Repeated bass notes are indistinguishable from
    held ones and are not changes.) For reading, not in the bar: the same changes by the length
    of the note they leave (`bass_by_length`: a 16th, an 8th, a quarter, any other length), each
    class's count and how many of them are stepwise.
16th notes (for reading, not in the bar)
    Per voice, the share of its notes (runs of one sounding pitch) that last a single 16th:
    Bach's inner voices ornament in 16ths now and then, his bass almost never.

The bar (`meets_bar`)
---------------------
PRODUCT.md: "parallels <= 1.5x Bach's 0.71; the other rates close to Bach's (a block-triad
harmonizer must fail)". Bach's figures are the caller's (the bench measures Bach's 77 test
chorales with the same functions), so both sides are measured the same way. The tolerances are
below (`TOLERANCES`); "relative difference" is |model - bach| / bach:

    parallels              model <= 1.5 x Bach
    voice crossing         |model - bach| <= 50% of Bach, or <= 0.015 absolute (1.5% of the
                           steps), whichever is larger: crossings are rare (2.0 to 3.0% of the
                           steps in Bach's three splits), so a purely relative tolerance would
                           be mostly sampling noise
    chord-type mix         total variation distance <= 0.10
    seventh chords         relative difference <= 30%
    harmony changes/beat   relative difference <= 20%
    bass stepwise motion   relative difference <= 15%

Chosen so that any of Bach's three splits measured against any other passes every line with
room to spare (test against train uses at most 63% of a tolerance, parallels ratio 0.95 of the
allowed 1.5; valid against test, the closest pair, uses 66% of the voice-crossing tolerance and
at most 36% of the others), while the block-triad harmonizer (`block_triad_harmonize`) of the
test sopranos fails every line against Bach's test chorales: parallels 33x Bach's rate, chord
mix TV 0.39, no seventh chords, 0.79 changes per beat against 1.50, 9% of bass moves stepwise
against 67%, and no voice crossing at all against 2.0% (this last only by 1.3x its tolerance).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable, Sequence

import numpy as np

from bridge.keys import estimate_key
from bridge.score import SATB

REST = -1
STEPS_PER_BEAT = 4
VOICE_PAIRS = tuple(combinations(range(4), 2))


def consecutive_perfect(a0, b0, a1, b1):
    """Two voices moving from pitches (a0, b0) to (a1, b1): both sound (>= 0) in both, both
    move, and the interval between them mod 12 is a perfect fifth (7) in both or an octave or
    unison (0) in both: consecutive perfects, by similar or contrary motion (the module doc's
    "parallels"). Pitches are MIDI numbers, or indices with one offset for every voice.

    The one definition of the rule: the bench counts with it here (element-wise on arrays),
    the samplers penalize with it (numba compiles it into bridge.kernels; the engines call it on
    ints), so they penalize exactly what the bench counts."""
    interval = abs(a1 - b1) % 12
    return ((a0 >= 0) & (b0 >= 0) & (a1 >= 0) & (b1 >= 0) & (a0 != a1) & (b0 != b1)
            & ((interval == 0) | (interval == 7)) & (abs(a0 - b0) % 12 == interval))


CHORD_TYPES = ("major", "minor", "diminished", "augmented", "dominant7", "other7", "incomplete", "other")
SEVENTH_TYPES = ("dominant7", "other7")

# pitch-class sets from the root, and the class each belongs to
_CHORD_SHAPES = {
    "major": [(0, 4, 7)],
    "minor": [(0, 3, 7)],
    "diminished": [(0, 3, 6)],
    "augmented": [(0, 4, 8)],
    "dominant7": [(0, 4, 7, 10), (0, 4, 10)],
    "other7": [(0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9), (0, 4, 7, 11), (0, 3, 10), (0, 4, 11)],
}

# PRODUCT.md's quoted figure for Bach, for the bench's table; the bar uses Bach's measured figure
BACH_PARALLELS_QUOTED = 0.71

TOLERANCES = {
    "parallels_max_ratio": 1.5,          # model <= 1.5 x Bach
    "voice_crossing_rel": 0.50,          # relative difference ...
    "voice_crossing_abs": 0.015,         # ... or this absolute difference, whichever is larger
    "chord_mix_tv": 0.10,                # total variation distance
    "sevenths_rel": 0.30,
    "changes_per_beat_rel": 0.20,
    "bass_stepwise_rel": 0.15,
}


def _mask_of(pcs: Iterable[int]) -> int:
    mask = 0
    for pc in pcs:
        mask |= 1 << (pc % 12)
    return mask


def _chord_table() -> np.ndarray:
    """Chord-type index (into CHORD_TYPES) of each of the 4096 pitch-class sets, as bitmasks."""
    table = np.full(4096, CHORD_TYPES.index("other"), dtype=np.int8)
    for mask in range(1, 4096):
        if bin(mask).count("1") <= 2:
            table[mask] = CHORD_TYPES.index("incomplete")
    for name, shapes in _CHORD_SHAPES.items():
        for shape in shapes:
            for root in range(12):
                table[_mask_of(root + step for step in shape)] = CHORD_TYPES.index(name)
    return table


_CHORD_TABLE = _chord_table()


def _as_rolls(rolls) -> list[np.ndarray]:
    if isinstance(rolls, np.ndarray) and rolls.ndim == 2:
        rolls = [rolls]
    out = []
    for roll in rolls:
        roll = np.asarray(roll)
        if roll.ndim != 2 or roll.shape[1] != 4:
            raise ValueError(f"a roll must be (T, 4), got shape {roll.shape}")
        out.append(roll.astype(np.int64))
    return out


@dataclass
class Sonorities:
    """The chord sequence of one roll: `pitches` (n, 4), `durations` (n,) in steps, and `run` (n,),
    the index of the run of sounding steps each sonority belongs to (a silent voice ends a run)."""
    pitches: np.ndarray
    durations: np.ndarray
    run: np.ndarray

    @property
    def changes(self) -> np.ndarray:
        """Indices i such that sonorities i and i+1 form a chord change (same run)."""
        return np.flatnonzero(self.run[1:] == self.run[:-1])


def chord_changes(roll: np.ndarray) -> Sonorities:
    """The sonorities of one roll (see the module doc): the S A T B tuples at the sounding steps
    where the tuple differs from the previous step's, with how long each lasts; steps with any
    silent voice are skipped and break the sequence."""
    roll = _as_rolls(roll)[0]
    sounding = np.all(roll >= 0, axis=1)
    if not sounding.any():
        empty = np.zeros(0, dtype=np.int64)
        return Sonorities(np.zeros((0, 4), dtype=np.int64), empty, empty)
    steps = np.flatnonzero(sounding)
    # a run of sounding steps starts where the previous step was not sounding
    run_of_step = np.cumsum(np.r_[True, np.diff(steps) > 1]) - 1
    new = np.r_[True, (np.diff(steps) > 1) | np.any(roll[steps[1:]] != roll[steps[:-1]], axis=1)]
    starts = np.flatnonzero(new)
    durations = np.diff(np.r_[starts, len(steps)])
    return Sonorities(roll[steps[starts]], durations, run_of_step[starts])


def _count_parallels(rolls) -> dict:
    """Counts of consecutive perfect fifths/octaves, split by kind and motion, and chord changes."""
    counts = {"changes": 0, "fifths_similar": 0, "octaves_similar": 0,
              "fifths_contrary": 0, "octaves_contrary": 0}
    for roll in _as_rolls(rolls):
        son = chord_changes(roll)
        idx = son.changes
        counts["changes"] += len(idx)
        if len(idx) == 0:
            continue
        before, after = son.pitches[idx], son.pitches[idx + 1]
        motion = after - before
        for upper, lower in VOICE_PAIRS:
            perfect = consecutive_perfect(before[:, upper], before[:, lower], after[:, upper], after[:, lower])
            similar = np.sign(motion[:, upper]) == np.sign(motion[:, lower])
            fifths = perfect & (np.abs(after[:, upper] - after[:, lower]) % 12 == 7)
            octaves = perfect & ~fifths
            counts["fifths_similar"] += int(np.sum(fifths & similar))
            counts["octaves_similar"] += int(np.sum(octaves & similar))
            counts["fifths_contrary"] += int(np.sum(fifths & ~similar))
            counts["octaves_contrary"] += int(np.sum(octaves & ~similar))
    return counts


def _per_100(count: int, changes: int) -> float:
    return 100.0 * count / changes if changes else 0.0


def parallels_per_100(rolls, include_contrary: bool = True) -> float:
    """Consecutive perfect fifths and octaves (see the module doc) per 100 chord changes.

    With `include_contrary` (the bar's figure) similar and contrary motion both count; without,
    only similar motion (parallel fifths and octaves in the narrow sense)."""
    c = _count_parallels(rolls)
    n = c["fifths_similar"] + c["octaves_similar"]
    if include_contrary:
        n += c["fifths_contrary"] + c["octaves_contrary"]
    return _per_100(n, c["changes"])


def _sounding_steps(rolls) -> np.ndarray:
    return np.concatenate([r[np.all(r >= 0, axis=1)] for r in _as_rolls(rolls)] or [np.zeros((0, 4), np.int64)])


def voice_crossing_share(rolls) -> float:
    """Share of sounding steps with S < A, A < T or T < B."""
    steps = _sounding_steps(rolls)
    if len(steps) == 0:
        return 0.0
    crossed = np.any(steps[:, :-1] < steps[:, 1:], axis=1)
    return float(crossed.mean())


def chord_type(pitches: Sequence[int]) -> str:
    """The class (one of CHORD_TYPES) of one sonority's pitch-class set."""
    return CHORD_TYPES[_CHORD_TABLE[_mask_of(int(p) for p in pitches if p >= 0)]]


def _chord_step_counts(rolls) -> np.ndarray:
    """Sounding steps in each chord class (CHORD_TYPES order)."""
    steps = _sounding_steps(rolls)
    masks = np.bitwise_or.reduce(np.left_shift(1, steps % 12), axis=1) if len(steps) else np.zeros(0, np.int64)
    return np.bincount(_CHORD_TABLE[masks], minlength=len(CHORD_TYPES)).astype(np.int64)


def chord_mix(rolls) -> dict[str, float]:
    """Share of sounding steps in each chord class (duration-weighted; sums to 1, or all 0 when
    nothing sounds)."""
    counts = _chord_step_counts(rolls)
    total = counts.sum()
    return {name: (float(counts[i] / total) if total else 0.0) for i, name in enumerate(CHORD_TYPES)}


def seventh_share(rolls) -> float:
    """Share of sounding steps whose sonority is a seventh chord (duration-weighted)."""
    mix = chord_mix(rolls)
    return sum(mix[name] for name in SEVENTH_TYPES)


def harmony_changes_per_beat(rolls) -> float:
    """Chord changes per beat of sounding steps (4 steps = 1 beat)."""
    rolls = _as_rolls(rolls)
    changes = sum(len(chord_changes(r).changes) for r in rolls)
    beats = len(_sounding_steps(rolls)) / STEPS_PER_BEAT
    return changes / beats if beats else 0.0


# the lengths of note (in 16ths) that bass_by_length tells apart; any other is "other"
BASS_NOTE_LENGTHS = {1: "16th", 2: "8th", 4: "quarter"}


def _notes(voice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first step, length) of each run of one pitch (or of rest) in a voice's steps."""
    starts = np.concatenate(([0], np.flatnonzero(voice[1:] != voice[:-1]) + 1))
    return starts, np.diff(np.concatenate((starts, [len(voice)])))


def _bass_moves(rolls) -> tuple[int, int, dict]:
    """(stepwise, moves, {length class: {"moves", "stepwise"}}) of the bass's pitch changes."""
    lengths, stepwise = [], []
    for roll in _as_rolls(rolls):
        bass = roll[:, 3].astype(np.int64)
        starts, runs = _notes(bass)
        changed, left = starts[1:], runs[:-1]                      # each change, the note (or rest) it leaves
        moved = (bass[changed] >= 0) & (bass[changed - 1] >= 0)    # a rest on either side is no move
        lengths.append(left[moved])
        stepwise.append(np.abs(bass[changed] - bass[changed - 1])[moved] <= 2)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    stepwise = np.concatenate(stepwise) if stepwise else np.zeros(0, bool)
    by_length = {}
    other = np.ones(len(lengths), dtype=bool)
    for length, name in BASS_NOTE_LENGTHS.items():
        of_length = lengths == length
        other &= ~of_length
        by_length[name] = {"moves": int(of_length.sum()), "stepwise": int(stepwise[of_length].sum())}
    by_length["other"] = {"moves": int(other.sum()), "stepwise": int(stepwise[other].sum())}
    return int(stepwise.sum()), len(stepwise), by_length


def _sixteenths(rolls) -> dict:
    """{voice: {"notes", "sixteenths"}}: each voice's notes and how many last a single 16th."""
    notes = np.zeros(len(SATB), np.int64)
    sixteenths = np.zeros(len(SATB), np.int64)
    for roll in _as_rolls(rolls):
        for v in range(len(SATB)):
            voice = roll[:, v].astype(np.int64)
            starts, lengths = _notes(voice)
            sounding = voice[starts] >= 0
            notes[v] += int(sounding.sum())
            sixteenths[v] += int((sounding & (lengths == 1)).sum())
    return {name: {"notes": int(notes[v]), "sixteenths": int(sixteenths[v])} for v, name in enumerate(SATB)}


def bass_stepwise_share(rolls) -> float:
    """Share of bass pitch changes (between consecutive steps, both sounding) of at most 2
    semitones."""
    stepwise, moves, _ = _bass_moves(rolls)
    return stepwise / moves if moves else 0.0


def music_stats(rolls) -> dict:
    """Every statistic of the module doc, pooled over `rolls`, plus the raw counts."""
    rolls = _as_rolls(rolls)
    par = _count_parallels(rolls)
    counts = _chord_step_counts(rolls)
    total = int(counts.sum())
    mix = {name: (float(counts[i] / total) if total else 0.0) for i, name in enumerate(CHORD_TYPES)}
    sounding = len(_sounding_steps(rolls))
    stepwise, moves, bass_by_length = _bass_moves(rolls)
    similar = par["fifths_similar"] + par["octaves_similar"]
    contrary = par["fifths_contrary"] + par["octaves_contrary"]
    return {
        "parallels": _per_100(similar + contrary, par["changes"]),
        "parallels_similar": _per_100(similar, par["changes"]),
        "voice_crossing": voice_crossing_share(rolls),
        "chord_mix": mix,
        "sevenths": sum(mix[name] for name in SEVENTH_TYPES),
        "changes_per_beat": par["changes"] / (sounding / STEPS_PER_BEAT) if sounding else 0.0,
        "bass_stepwise": stepwise / moves if moves else 0.0,
        "bass_by_length": bass_by_length,
        "sixteenths": _sixteenths(rolls),
        "counts": {
            "chorales": len(rolls),
            "steps": int(sum(len(r) for r in rolls)),
            "sounding_steps": sounding,
            "chord_changes": par["changes"],
            **{k: v for k, v in par.items() if k != "changes"},
            "bass_moves": moves,
            "bass_stepwise_moves": stepwise,
        },
    }


# the statistics the bar compares, in table order
BAR_STATS = ("parallels", "voice_crossing", "chord_mix", "sevenths", "changes_per_beat", "bass_stepwise")


def _relative(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else float("inf")
    return abs(a - b) / abs(b)


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two distributions over the same classes."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def compare(stats_a: dict, stats_b: dict) -> dict[str, float]:
    """Distance of `stats_a` from `stats_b` per statistic: the relative difference
    |a - b| / b for the rates (b the reference: Bach), the total variation distance for the chord
    mix; `parallels_ratio` is a / b of the parallels rate."""
    out = {name: _relative(stats_a[name], stats_b[name])
           for name in BAR_STATS + ("parallels_similar",) if name != "chord_mix"}
    out["chord_mix"] = total_variation(stats_a["chord_mix"], stats_b["chord_mix"])
    out["parallels_ratio"] = (stats_a["parallels"] / stats_b["parallels"] if stats_b["parallels"]
                              else (0.0 if stats_a["parallels"] == 0 else float("inf")))
    out["voice_crossing_abs"] = abs(stats_a["voice_crossing"] - stats_b["voice_crossing"])
    return out


@dataclass
class Check:
    name: str
    passed: bool
    distance: float     # what is compared with the tolerance
    rule: str           # the bar, in words


@dataclass
class Verdict:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks.values())

    def __bool__(self) -> bool:
        return self.passed

    def failed(self) -> list[str]:
        return [name for name, c in self.checks.items() if not c.passed]


def meets_bar(model_stats: dict, bach_stats: dict, tolerances: dict | None = None) -> Verdict:
    """PRODUCT.md's musical bar, line by line (see TOLERANCES and the module doc).

    `bool(verdict)` is the overall verdict; `verdict.checks[name]` says each line's."""
    tol = {**TOLERANCES, **(tolerances or {})}
    d = compare(model_stats, bach_stats)
    v = Verdict()
    v.checks["parallels"] = Check("parallels", d["parallels_ratio"] <= tol["parallels_max_ratio"],
                                  d["parallels_ratio"], f"<= {tol['parallels_max_ratio']:g}x Bach")
    crossing_allowed = max(tol["voice_crossing_rel"] * bach_stats["voice_crossing"], tol["voice_crossing_abs"])
    v.checks["voice_crossing"] = Check(
        "voice_crossing", d["voice_crossing_abs"] <= crossing_allowed, d["voice_crossing_abs"],
        f"|diff| <= {crossing_allowed:.3f}")
    v.checks["chord_mix"] = Check("chord_mix", d["chord_mix"] <= tol["chord_mix_tv"], d["chord_mix"],
                                  f"TV <= {tol['chord_mix_tv']:g}")
    for name, key in (("sevenths", "sevenths_rel"), ("changes_per_beat", "changes_per_beat_rel"),
                      ("bass_stepwise", "bass_stepwise_rel")):
        v.checks[name] = Check(name, d[name] <= tol[key], d[name], f"rel <= {tol[key]:.0%}")
    return v


# --- the baseline that must fail -----------------------------------------------------------------

# diatonic triads by scale degree: (semitones above the tonic, quality), in order of preference
_DIATONIC_TRIADS = {
    "major": ((0, "major"), (7, "major"), (5, "major"), (9, "minor"), (2, "minor"), (4, "minor")),
    # harmonic minor's major V, the rest natural minor
    "minor": ((0, "minor"), (7, "major"), (5, "minor"), (8, "major"), (3, "major"), (10, "major")),
}
_TRIAD_STEPS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
BASS_RANGE = (36, 60)


def _triad_for(melody_pc: int, tonic: int, mode: str) -> tuple[int, ...]:
    """Pitch classes (root, third, fifth) of the first diatonic triad containing the melody's
    pitch class; for a note outside the key, the major triad on it."""
    for degree, quality in _DIATONIC_TRIADS[mode]:
        root = (tonic + degree) % 12
        pcs = tuple((root + s) % 12 for s in _TRIAD_STEPS[quality])
        if melody_pc in pcs:
            return pcs
    return tuple((melody_pc + s) % 12 for s in _TRIAD_STEPS["major"])


def _highest_below(pc: int, ceiling: int) -> int:
    """Highest pitch of pitch class `pc` strictly below `ceiling`."""
    pitch = ceiling - 1
    return pitch - ((pitch - pc) % 12)


def block_triad_voicing(soprano: int, triad: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Close-position root-position voicing of `triad` (root, third, fifth) under `soprano`."""
    first, second = [pc for pc in triad if pc != soprano % 12][:2]
    # the two tones the soprano does not take, close under it, the higher one in the alto
    a, b = _highest_below(first, soprano), _highest_below(second, soprano)
    alto, tenor_pc = (a, second) if a > b else (b, first)
    tenor = _highest_below(tenor_pc, alto)
    root = triad[0]
    bass = _highest_below(root, min(tenor, BASS_RANGE[1] + 1))
    while bass < BASS_RANGE[0]:
        bass += 12
    return int(soprano), int(alto), int(tenor), int(bass)


def block_triad_harmonize(soprano: np.ndarray) -> np.ndarray:
    """The naive baseline: under each melody note, a root-position major or minor diatonic triad
    (key from `estimate_key` on the melody, notes weighted by duration) with the melody note as
    its root, third or fifth, preferring I, V, IV, vi, ii, iii (minor: i, V, iv, VI, III, VII);
    alto and tenor the other two chord tones in close position below the soprano, bass on the
    root in 36..60 below the tenor; held as long as the melody note. Melody rests: all voices
    rest. (T,) -> (T, 4)."""
    soprano = np.asarray(soprano, dtype=np.int64)
    roll = np.full((len(soprano), 4), REST, dtype=np.int16)
    sounding = soprano >= 0
    if not sounding.any():
        return roll
    tonic, mode = estimate_key(soprano[sounding])     # one weight per step = duration-weighted
    for t in np.flatnonzero(sounding):
        pitch = int(soprano[t])
        roll[t] = block_triad_voicing(pitch, _triad_for(pitch % 12, tonic, mode))
    return roll
