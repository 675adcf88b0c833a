"""How the bridge plays: the mode, its timing and the clock (Playing), and the knobs of call and
response with its phrase engine (Call and response)."""
from __future__ import annotations

from PyQt6.QtWidgets import QCheckBox, QComboBox

from bridge.clock import MODES as CLOCK_MODES
from bridge.engines.phrase import HARMONIZERS
from bridge.live import MODES
from gui.panels.form import FormGroup, double_box, int_box

MODE_LABELS = {"note": "Note: answer each onset", "phrase": "Phrase: look ahead",
               "respond": "Respond: call and response"}
CLOCK_LABELS = {"auto": "Auto (DAW clock, else BPM)", "midi": "DAW clock", "internal": "Internal BPM",
                "free": "Free (each note = next 16th)"}


class PlayingPanel(FormGroup):
    def __init__(self):
        super().__init__("Playing")
        self.mode = QComboBox()
        for name in MODES:
            self.mode.addItem(MODE_LABELS.get(name, name), name)
        self.row("M&ode", self.mode, "note: each melody note is answered at once; phrase: wait the "
                                     "lookahead, harmonize the phrase, play it that much later; "
                                     "respond: when you stop, answer your phrase with one of its own")
        self.bind_choice("config", "mode", self.mode)
        self.lookahead = double_box(0.25, 16.0, 0.25)
        self.lookahead.setSuffix(" beats")
        self.row("Look&ahead", self.lookahead, "Phrase mode: beats the bridge waits before it plays "
                                               "(set the DAW's track delay to match)")
        self.bind_box("config", "lookahead_beats", self.lookahead)
        self.speculate = QCheckBox("Speculate")
        self.row("", self.speculate, "Harmonize likely next notes ahead of time, so an answer is "
                                     "ready when the note comes (Alt+U)")
        self.speculate.setText("Spec&ulate")
        self.bind("config", "speculate", [self.speculate], self.speculate.isChecked, self.speculate.setChecked)
        self.clock = QComboBox()
        for name in CLOCK_MODES:
            self.clock.addItem(CLOCK_LABELS.get(name, name), name)
        self.row("&Clock", self.clock, "auto: the DAW's MIDI clock while it runs, else the BPM below; "
                                       "DAW clock; internal BPM; free: each note is the next 16th")
        self.bind_choice("config", "clock", self.clock)
        self.bpm = double_box(20.0, 400.0, 1.0, 1)
        self.bpm.setSuffix(" bpm")
        self.row("&BPM", self.bpm, "The internal tempo (auto without a DAW clock, and internal)")
        self.bind_box("config", "bpm", self.bpm)
        self.context = int_box(0, 256)
        self.context.setSuffix(" 16ths")
        self.row("Cont&ext", self.context, "16ths of the past the model is shown (16 = a bar)")
        self.bind_box("config", "context_steps", self.context)

    def enable_for_mode(self, mode: str) -> None:
        self.lookahead.setEnabled(mode == "phrase")


class RespondPanel(FormGroup):
    def __init__(self):
        super().__init__("Call and response")
        self.respond_after = double_box(0.25, 16.0, 0.25)
        self.respond_after.setSuffix(" beats")
        self.row("Ans&wer after", self.respond_after, "Respond mode: the bridge answers once you have "
                                                      "been silent this long")
        self.bind_box("config", "respond_after_beats", self.respond_after)
        self.answer_bars = int_box(1, 16)
        self.answer_bars.setSuffix(" bars")
        self.row("Answer ba&rs", self.answer_bars, "Respond mode: how long the answer is")
        self.bind_box("config", "answer_bars", self.answer_bars)
        self.respond_cc = QComboBox()
        self.respond_cc.addItem("off", None)
        for number in range(120):
            self.respond_cc.addItem(f"CC {number}" + (" (sustain pedal)" if number == 64 else ""), number)
        self.row("&Footswitch", self.respond_cc, "Respond mode: a controller that asks for the answer "
                                                 "at once (pressed: value 64 or more)")
        self.bind_choice("config", "respond_cc", self.respond_cc)
        self.top_p = double_box(0.05, 1.0, 0.05)
        self.row("To&p p", self.top_p, "Phrase engine: draw only among the likeliest notes that make up "
                                       "this share of the probability (1 = all)")
        self.bind_box("settings", "top_p", self.top_p)
        self.repeat_limit = int_box(0, 16)
        self.row("Repeat l&imit", self.repeat_limit, "Phrase engine: a pitch struck at most this many "
                                                     "times in a row (0 = any)")
        self.bind_box("settings", "repeat_limit", self.repeat_limit)
        self.harmonizer = QComboBox()
        for name in HARMONIZERS:
            self.harmonizer.addItem(name, name)
        self.row("Harmoni&zer", self.harmonizer, "Phrase engine: the voices under its melody, from a model "
                                                 "that fills or a plain voicing of its chords")
        self.bind_choice("settings", "harmonizer", self.harmonizer)

    def enable_for_mode(self, mode: str) -> None:
        for box in (self.respond_after, self.answer_bars, self.respond_cc):
            box.setEnabled(mode == "respond")
