"""Offline work from the window (Offline): harmonize a file or convert a folder with the knobs as
set, off the GUI thread (gui.offline), then reveal the result or play it out of the bridge's port."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt6.QtCore import QUrl, pyqtSignal
from PyQt6.QtGui import QDesktopServices
from PyQt6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton

from bridge.settings import Settings
from gui.offline import FilePlayer, OfflineJob
from gui.panels.form import FormGroup
from gui.widgets import tip


class OfflinePanel(FormGroup):
    problem = pyqtSignal(str)
    message = pyqtSignal(str, int)    # a line for the status bar, and for how many ms
    harmonized = pyqtSignal(object)   # the Path of the one file a job wrote (its passages may be drawn again)

    def __init__(self, model: Callable[[], str], settings: Callable[[], Settings], bridge: Callable[[], object]):
        """`model()`, `settings()`: what a job harmonizes with, as they are when it starts;
        `bridge()`: the live bridge a result is played out of, or None."""
        super().__init__("Offline")
        self._model, self._settings, self._bridge = model, settings, bridge
        self.job: OfflineJob | None = None
        self.last_outputs: list[Path] = []
        self.player: FilePlayer | None = None
        row = QHBoxLayout()
        self.harmonize_button = QPushButton("Harmonize file…")
        tip(self.harmonize_button, "Harmonize a MIDI file's melody in four voices, with the knobs as set", "Ctrl+H")
        self.harmonize_button.clicked.connect(self.ask_harmonize_file)
        self.convert_button = QPushButton("Convert folder…")
        tip(self.convert_button, "Harmonize every MIDI file under a folder into another folder", "Ctrl+B")
        self.convert_button.clicked.connect(self.ask_convert_folder)
        row.addWidget(self.harmonize_button)
        row.addWidget(self.convert_button)
        self.form.addRow(row)
        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")   # "%v / %m" once a conversion runs
        tip(self.progress, "Files done / files to do")
        self.cancel_button = QPushButton("Cancel")
        tip(self.cancel_button, "Stop the conversion after the file it is on (nothing half-written)", "Ctrl+.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.form.addRow(progress_row)
        self.offline_label = QLabel("")
        self.offline_label.setWordWrap(True)
        self.offline_label.setProperty("role", "caption")
        self.form.addRow(self.offline_label)
        result_row = QHBoxLayout()
        self.reveal_button = QPushButton("Reveal")
        tip(self.reveal_button, "Show the result in the file manager", "Ctrl+E")
        self.reveal_button.clicked.connect(self.reveal_result)
        self.play_button = QPushButton("Play")
        tip(self.play_button, "Play the result out of the output port (again to stop)", "Ctrl+P")
        self.play_button.clicked.connect(self.toggle_play)
        for button in (self.reveal_button, self.play_button):
            button.setEnabled(False)
            result_row.addWidget(button)
        self.form.addRow(result_row)

    # ------------------------------------------------------------ jobs

    def harmonize_file(self, source: Path, target: Path) -> OfflineJob | None:
        return self._start(OfflineJob(source, target, self._model(), self._settings(), folder=False),
                           f"harmonizing {Path(source).name}…")

    def convert_folder(self, source: Path, target: Path, overwrite: bool = False) -> OfflineJob | None:
        return self._start(OfflineJob(source, target, self._model(), self._settings(), folder=True,
                                      overwrite=overwrite), f"converting {source}…")

    def _start(self, job: OfflineJob, what: str) -> OfflineJob | None:
        if self.job is not None and self.job.running():
            self.problem.emit("a conversion is running: cancel it first (Ctrl+.)")
            return None
        self.job = job
        job.progress.connect(self._progressed)
        job.finished.connect(self._finished)
        job.failed.connect(self._failed)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setFormat("%v / %m")
        self.cancel_button.setEnabled(True)
        self.harmonize_button.setEnabled(False)
        self.convert_button.setEnabled(False)
        self.offline_label.setText(what)
        job.start()
        return job

    def _progressed(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _ended(self, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.harmonize_button.setEnabled(True)
        self.convert_button.setEnabled(True)
        self.offline_label.setText(text)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)

    def _finished(self, result) -> None:
        if result.outputs:
            self.last_outputs = result.outputs
            if len(result.outputs) == 1:
                self.harmonized.emit(result.outputs[0])
        self._ended("\n".join(result.lines))
        self.reveal_button.setEnabled(bool(self.last_outputs))
        self.show_live(self._bridge() is not None)
        self.message.emit(result.lines[0] if result.lines else "done", 6000)

    def _failed(self, message: str) -> None:
        self._ended(f"failed: {message}")
        self.problem.emit(message)

    def cancel(self) -> None:
        if self.job is not None and self.job.running():
            self.job.cancel()
            self.offline_label.setText("cancelling after the current file…")

    def ask_harmonize_file(self) -> None:
        source, _ = QFileDialog.getOpenFileName(self.window(), "Harmonize a MIDI file", "", "MIDI files (*.mid *.midi)")
        if not source:
            return
        suggested = str(Path(source).with_name(Path(source).stem + "_chorale.mid"))
        target, _ = QFileDialog.getSaveFileName(self.window(), "Write the chorale to", suggested, "MIDI files (*.mid)")
        if target:
            self.harmonize_file(Path(source), Path(target))

    def ask_convert_folder(self) -> None:
        source = QFileDialog.getExistingDirectory(self.window(), "Folder of MIDI files to harmonize")
        if not source:
            return
        target = QFileDialog.getExistingDirectory(self.window(), "Folder to write the chorales to")
        if target:
            self.convert_folder(Path(source), Path(target))

    # ------------------------------------------------------------ the result

    def reveal_result(self) -> None:
        if self.last_outputs:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.last_outputs[0].parent)))

    def show_live(self, live: bool) -> None:
        """A result plays out of the live bridge's port: Play only with both."""
        self.play_button.setEnabled(bool(self.last_outputs) and live)

    def toggle_play(self) -> None:
        if self.player is not None and self.player.playing():
            self.player.stop()
            return
        bridge = self._bridge()
        if bridge is None or not self.last_outputs:
            self.problem.emit("nothing to play, or no output port open")
            return
        self.player = FilePlayer(self.last_outputs[0], bridge)
        self.player.finished.connect(self._play_finished)
        self.player.start()
        self.play_button.setText("Stop")

    def _play_finished(self, why: str) -> None:
        self.play_button.setText("Play")
        self.message.emit(why, 4000)

    def stop_playing(self) -> None:
        if self.player is not None:
            self.player.stop()

    def stop(self) -> None:
        """A file playing stopped, a conversion cancelled and waited for (up to a minute)."""
        self.stop_playing()
        if self.job is not None and self.job.running():
            self.job.cancel()
            self.job.wait(60)
