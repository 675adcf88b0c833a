"""How the live bridge plays: `LiveConfig` (mode, lookahead, clock, channels, ...) and the
`Snapshot` the worker plays by (config, sampling settings and engine, swapped whole)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from bridge.clock import MAX_BPM, MIN_BPM, MODES as CLOCK_MODES, NS_PER_MINUTE
from bridge.engines import FILL, PREDICT_MELODY, Engine
from bridge.errors import BadInput
from bridge.settings import Settings

MODES = ("note", "phrase", "respond")
# the modes that harmonize the player's own melody (respond mode continues it: any engine can)
HARMONIZING_MODES = ("note", "phrase")
VOICES = 4
# the song's beats and bars, in 16ths, counted from its start (step 0 is a downbeat), in 4/4:
# where respond mode's answers begin, and the bars phrase mode's phrases are drawn in
BEAT_STEPS = 4
BAR_STEPS = 16
# the sampling knobs `bachbridge live` starts with: phrase mode anneals as offline does
LIVE_SETTINGS = Settings()
# the longest lookahead, in beats
MAX_LOOKAHEAD_BEATS = 16.0
# respond mode: the longest silence before an answer, in beats, and the longest answer, in bars
MAX_RESPOND_AFTER_BEATS = 16.0
MAX_ANSWER_BARS = 16


@dataclass(frozen=True)
class LiveConfig:
    """How the bridge plays (not the sampling knobs: those are `Settings`). Channels are 0-based."""
    mode: str = "note"                           # note: answer each onset; phrase: play it all later;
                                                 # respond: answer the player's phrase with one of its own
    lookahead_beats: float = 2.0                 # phrase mode: how much later, in beats
    speculate: bool = True                       # note mode: work out likely next answers between notes
    context_steps: int = 16                      # 16ths of past shown to the engine (a bar)
    clock: str = "auto"                          # auto, midi, internal, free: see bridge.clock
    bpm: float = 100.0                           # the internal tempo
    channels: tuple[int, int, int] = (1, 2, 3)   # alto, tenor, bass: MIDI channels 2, 3, 4
    echo: bool = True                            # the melody is sent on too ...
    echo_channel: int = 0                        # ... on MIDI channel 1
    in_channel: int | None = None                # melody note-ons from this channel only; None = any
    respond_after_beats: float = 1.0             # respond mode: the player silent this long -> the answer ...
    respond_cc: int | None = None                # ... or this controller (a footswitch) pressed; None = silence only
    answer_bars: int = 2                         # respond mode: the answer's length
    knob_controls: tuple = ()                    # ((knob, controller or 'program'), ...): see bridge.live.learn

    def __post_init__(self):
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0.25 <= self.lookahead_beats <= MAX_LOOKAHEAD_BEATS:
            problems.append(f"lookahead_beats must be 0.25..{MAX_LOOKAHEAD_BEATS:g}, not {self.lookahead_beats}")
        if not (isinstance(self.context_steps, int) and 0 <= self.context_steps <= 256):
            problems.append(f"context_steps must be 0..256, not {self.context_steps}")
        if self.clock not in CLOCK_MODES:
            problems.append(f"clock must be one of {', '.join(CLOCK_MODES)}, not {self.clock!r}")
        if not MIN_BPM <= self.bpm <= MAX_BPM:
            problems.append(f"bpm must be {MIN_BPM:.0f}..{MAX_BPM:.0f}, not {self.bpm}")
        channels = tuple(self.channels)
        if len(channels) != VOICES - 1 or not all(_is_channel(c) for c in channels):
            problems.append(f"channels must be three MIDI channels 0..15 (alto, tenor, bass), not {self.channels}")
        if not _is_channel(self.echo_channel):
            problems.append(f"echo_channel must be 0..15, not {self.echo_channel}")
        if self.in_channel is not None and not _is_channel(self.in_channel):
            problems.append(f"in_channel must be 0..15 or None, not {self.in_channel}")
        if not 0.25 <= self.respond_after_beats <= MAX_RESPOND_AFTER_BEATS:
            problems.append(f"respond_after_beats must be 0.25..{MAX_RESPOND_AFTER_BEATS:g}, not {self.respond_after_beats}")
        if self.respond_cc is not None and not (isinstance(self.respond_cc, int) and 0 <= self.respond_cc <= 119):
            problems.append(f"respond_cc must be a controller 0..119 or None, not {self.respond_cc}")
        if not (isinstance(self.answer_bars, int) and 1 <= self.answer_bars <= MAX_ANSWER_BARS):
            problems.append(f"answer_bars must be 1..{MAX_ANSWER_BARS}, not {self.answer_bars}")
        from bridge.live.learn import check_bindings   # here: learn reads this module's MODES

        problems += check_bindings(tuple(self.knob_controls), self.respond_cc)
        if problems:
            raise BadInput("; ".join(problems))
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "knob_controls", tuple(self.knob_controls))

    def replace(self, **changes) -> "LiveConfig":
        return replace(self, **changes)

    def output_channels(self) -> list[int]:
        """Every channel the bridge may sound notes on."""
        return sorted({*self.channels, self.echo_channel})

    def delay_ns(self, bpm: float) -> int:
        """Phrase mode's delay at `bpm`."""
        return int(self.lookahead_beats * NS_PER_MINUTE / bpm)


def _is_channel(c) -> bool:
    return isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 15


@dataclass(frozen=True)
class Snapshot:
    """What the worker plays by, swapped whole."""
    config: LiveConfig
    settings: Settings
    engine: Engine

    @property
    def speculating(self) -> bool:
        """Note mode works out likely next answers: asked to, with an engine that can name the
        likely next melody notes."""
        return self.config.speculate and PREDICT_MELODY in self.engine.capabilities


def checked_snapshot(engine, config, settings) -> Snapshot:
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine, not {type(engine).__name__}")
    if not isinstance(config, LiveConfig):
        raise TypeError(f"config must be a LiveConfig, not {type(config).__name__}")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
    if config.mode in HARMONIZING_MODES and FILL not in engine.capabilities:
        raise BadInput(f"the {engine.name} engine cannot fill in a harmony, which {config.mode} mode asks of it "
                       "(respond mode plays it)")
    return Snapshot(config, settings, engine)
