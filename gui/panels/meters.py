"""The meters under the roll: latency, speculation, errors, notes, tempo and song position, read
from the bridge's stats."""
from __future__ import annotations

from PyQt6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from bridge.live.stats import StatsSnapshot
from gui import theme
from gui.widgets import Readout, short

LATENCY_WARN_MS = 10   # a p99 above this shows red


class Meters(QWidget):
    def __init__(self):
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        self.latency_meter = Readout("Latency", "Melody note-on in -> first harmony note-on out: last, and p99 "
                                                "over the last 512 notes")
        self.speculation_meter = Readout("Speculation", "Share of notes whose harmony was ready before they came")
        self.errors_meter = Readout("Errors", "Notes the engine failed on (played through unharmonized)")
        self.notes_meter = Readout("Notes", "Melody notes in / harmony notes out")
        self.tempo_meter = Readout("Tempo", "The tempo the bridge follows, and where it comes from")
        self.position_meter = Readout("Position", "Song position, bar.beat.16th (from the DAW or the internal clock)")
        for meter in (self.latency_meter, self.speculation_meter, self.errors_meter, self.notes_meter,
                      self.tempo_meter, self.position_meter):
            meter.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            row.addWidget(meter)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def show_stats(self, s: StatsSnapshot) -> None:
        self.latency_meter.show_value(_ms(s.last_latency_ms), f"p99 {_ms(s.p99_latency_ms)}",
                                      theme.DANGER if (s.p99_latency_ms or 0) > LATENCY_WARN_MS else None)
        if s.speculation_lookups:
            self.speculation_meter.show_value(f"{100 * s.speculation_hits / s.speculation_lookups:.0f}%",
                                              f"{s.speculation_hits} of {s.speculation_lookups}")
        else:
            self.speculation_meter.show_value("—", "no lookups yet")
        self.errors_meter.show_value(str(s.engine_errors), short(s.last_engine_error or ""),
                                     theme.DANGER if s.engine_errors else None)
        self.errors_meter.setToolTip(s.last_engine_error or "Notes the engine failed on (played through unharmonized)")
        self.notes_meter.show_value(f"{s.notes_in}", f"{s.harmony_notes_out} harmony out")
        running = "running" if s.clock_running else "stopped"
        self.tempo_meter.show_value(f"{s.bpm:.1f}", f"{s.clock_source} · {running}")
        self.position_meter.show_value(position_text(s.position_steps), "bar.beat.16th")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def position_text(steps) -> str:
    """A song position in 16ths as bar.beat.16th, counted from 1 (4/4)."""
    if steps is None:
        return "—"
    steps = int(steps)
    bar, rest = divmod(steps, 16)
    beat, sixteenth = divmod(rest, 4)
    return f"{bar + 1}.{beat + 1}.{sixteenth + 1}"
