"""Where the voices go and where the melody comes from: MIDI channels (Channels)."""
from __future__ import annotations

from PyQt6.QtWidgets import QCheckBox, QComboBox

from gui import theme
from gui.panels.form import FormGroup, int_box

# the voices sent; their rows, like the melody's channels and the ports, have no Alt letter: the
# window shows more labelled controls than there are letters, and the knobs played live keep theirs
SENT_VOICES = ("Alto", "Tenor", "Bass")


class ChannelsPanel(FormGroup):
    """Channels are counted 1-16 here, 0-15 in LiveConfig."""

    def __init__(self):
        super().__init__("Channels")
        self.channel_boxes = []
        for voice, name in enumerate(SENT_VOICES, start=1):
            box = int_box(1, 16)
            box.setPrefix("ch ")
            self.row(name, box, f"MIDI channel {name.lower()} is sent on (all three may share one)")
            self.form.labelForField(box).setStyleSheet(f"color: {theme.VOICE_COLOURS[voice].name()};")
            self.channel_boxes.append(box)
        self.bind("config", "channels", self.channel_boxes,
                  lambda: tuple(b.value() - 1 for b in self.channel_boxes),
                  lambda channels: [b.setValue(c + 1) for b, c in zip(self.channel_boxes, channels)])
        self.echo = QCheckBox("Echo the melody")
        self.row("", self.echo, "Send the melody on too, on its own channel (Alt+H)")
        self.echo.setText("Ec&ho the melody")
        self.bind("config", "echo", [self.echo], self.echo.isChecked, self.echo.setChecked)
        self.echo_channel = int_box(1, 16)
        self.echo_channel.setPrefix("ch ")
        self.row("Melody echo", self.echo_channel, "MIDI channel the melody is echoed on")
        self.form.labelForField(self.echo_channel).setStyleSheet(f"color: {theme.VOICE_COLOURS[0].name()};")
        self.bind("config", "echo_channel", [self.echo_channel], lambda: self.echo_channel.value() - 1,
                  lambda c: self.echo_channel.setValue(c + 1))
        self.in_channel = QComboBox()
        self.in_channel.addItem("any", None)
        for channel in range(16):
            self.in_channel.addItem(f"ch {channel + 1}", channel)
        self.row("Melody from", self.in_channel, "Take melody notes from this MIDI channel only")
        self.bind_choice("config", "in_channel", self.in_channel)
