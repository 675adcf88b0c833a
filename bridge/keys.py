"""Keys: naming them, estimating a melody's, and the pitch classes a harmony may use in one.

Plain Python and numpy (no numba), so settings can validate a key without compiling anything.
"""
from __future__ import annotations

import re

import numpy as np

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(midi_pitches: np.ndarray, durations: np.ndarray | None = None) -> tuple[int, str]:
    """Krumhansl-Schmuckler key of a melody: (tonic pitch class, 'major' or 'minor').

    Rests (-1) are ignored; notes are weighted by duration when given. Raises ValueError when
    there is no note to go on. Ties go to major, then the lower tonic.
    """
    pitches = np.asarray(midi_pitches).ravel()
    if durations is None:
        weights = np.ones(pitches.shape, dtype=np.float64)
    else:
        weights = np.asarray(durations, dtype=np.float64).ravel()
        if weights.shape != pitches.shape:
            raise ValueError(f"durations has {weights.size} entries but there are {pitches.size} pitches")
        if np.any(weights < 0):
            raise ValueError("durations must not be negative")
    sounding = pitches >= 0
    histogram = np.bincount(pitches[sounding].astype(np.int64) % 12, weights=weights[sounding],
                            minlength=12)
    if histogram.sum() <= 0:
        raise ValueError("no notes to estimate a key from")
    centred = histogram - histogram.mean()
    spread = np.sqrt((centred ** 2).sum())
    best_score, best_key = -np.inf, (0, "major")
    for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            # Rotate so that profile[0] (the tonic rating) lands on pitch class `tonic`.
            rotated = np.roll(profile, tonic)
            ref = rotated - rotated.mean()
            # A flat histogram (every pitch class equally used) says nothing: all scores are 0.
            score = (centred @ ref) / (spread * np.sqrt((ref ** 2).sum())) if spread > 0 else 0.0
            if score > best_score:
                best_score, best_key = score, (tonic, mode)
    return best_key


_SCALE_STEPS = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    # Natural minor plus the raised 6th and 7th that Bach's minor chorales use all the time.
    "minor": (0, 2, 3, 5, 7, 8, 9, 10, 11),
}


def scale_pitch_classes(tonic: int, mode: str) -> tuple[int, ...]:
    """Pitch classes (sorted ascending) a chorale in `tonic` `mode` may use."""
    if mode not in _SCALE_STEPS:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    if not 0 <= int(tonic) <= 11:
        raise ValueError(f"tonic must be a pitch class 0..11, got {tonic!r}")
    return tuple(sorted((int(tonic) + step) % 12 for step in _SCALE_STEPS[mode]))


_NATURAL_PC = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY_RE = re.compile(
    r"""^\s*(?P<letter>[A-Ga-g])
        (?P<accidental>\#|♯|b|♭|[\s-]*sharp|[\s-]*flat)?
        (?:[\s_-]*(?P<mode>m|M|min|minor|maj|major))?\s*$""",
    re.VERBOSE,
)


def parse_key(text: str) -> tuple[int, str]:
    """'C', 'F#', 'Bb', 'Am', 'c#m', 'Ebm', 'D minor', 'G major' -> (tonic pitch class, mode).

    The tonic letter is case-insensitive and the key is major unless a mode is given; the single
    letter 'm' means minor and 'M' major (chord-symbol usage); the words are case-insensitive.
    """
    if not isinstance(text, str):
        raise ValueError(f"key must be a string, got {text!r}")
    # Words are case-insensitive, but the one-letter 'm'/'M' and the flat sign 'b' are not.
    normalized = re.sub(r"(?i)minor|major|min|maj|sharp|flat", lambda m: m.group(0).lower(), text)
    match = _KEY_RE.match(normalized)
    if match is None:
        raise ValueError(
            f"unrecognised key {text!r}: expected a tonic A-G, optionally # or b, then optionally "
            "'m', 'minor' or 'major' (e.g. 'C', 'F#m', 'Bb', 'D minor')"
        )
    pc = _NATURAL_PC[match["letter"].lower()]
    accidental = re.sub(r"[\s-]+", "", match["accidental"] or "")
    if accidental in ("#", "♯", "sharp"):
        pc += 1
    elif accidental in ("b", "♭", "flat"):
        pc -= 1
    mode = "minor" if match["mode"] in ("m", "min", "minor") else "major"
    return pc % 12, mode


_TONIC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def key_name(tonic: int, mode: str) -> str:
    """(tonic pitch class, 'major' or 'minor') -> a name parse_key reads back: 'Eb', 'F#m'."""
    return _TONIC_NAMES[tonic % 12] + ("m" if mode == "minor" else "")
