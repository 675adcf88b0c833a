"""Offline work from the window, off the GUI thread: harmonize one file, convert a folder, and play
a result out of the bridge's output port (sent by the bridge's worker).

Each runs in its own Python thread and reports through Qt signals (queued into the GUI thread).
Offline engines are loaded in the job's thread with one onnxruntime thread, so the live bridge
keeps a core for itself.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from bridge.convert import batch_convert, harmonize_file
from bridge.engines import load_engine
from bridge.errors import BadInput
from bridge.live.playback import file_events
from bridge.settings import Settings

# how often a file playing out of the bridge is looked at (to say when it has ended)
POLL_MS = 50


@dataclass
class OfflineResult:
    outputs: list[Path] = field(default_factory=list)   # files written
    lines: list[str] = field(default_factory=list)      # the summary, for the status bar
    cancelled: bool = False


class OfflineJob(QObject):
    """One offline conversion. `start()` runs it; `cancel()` stops it at the next file boundary
    (a single file: its result is discarded, the target left as it was). `finished` is emitted
    from the job's thread, so a slot connected after `start()` may miss it: `result` keeps it."""
    progress = pyqtSignal(int, int)      # done, total
    finished = pyqtSignal(object)        # OfflineResult
    failed = pyqtSignal(str)

    def __init__(self, source: Path, target: Path, model: str, settings: Settings, folder: bool,
                 overwrite: bool = True, parent=None):
        super().__init__(parent)
        self.source, self.target = Path(source), Path(target)
        self.model, self.settings, self.folder, self.overwrite = model, settings, folder, overwrite
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bachbridge-offline", daemon=True)
        self.result: OfflineResult | None = None

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            result = self._convert_folder() if self.folder else self._harmonize_file()
        except BadInput as error:
            self.failed.emit(str(error))
            return
        except Exception as error:  # a bug: say it in the window rather than lose the thread silently
            self.failed.emit(f"{type(error).__name__}: {error}")
            return
        self.result = result
        self.finished.emit(result)

    def _harmonize_file(self) -> OfflineResult:
        self.progress.emit(0, 1)
        engine = load_engine(self.model, threads=1)
        # written beside the target under another name first: a cancel arriving while the engine
        # works discards the result without touching a file the user already had there
        partial = self.target.with_name(f".{self.target.name}.partial.mid")
        try:
            harmonize_file(self.source, partial, engine, self.settings)
            if self.cancelled:
                return OfflineResult(lines=[f"cancelled: {self.target.name} not written"], cancelled=True)
            os.replace(partial, self.target)
        finally:
            partial.unlink(missing_ok=True)
        self.progress.emit(1, 1)
        return OfflineResult([self.target], [f"harmonized {self.source.name} -> {self.target}"])

    def _convert_folder(self) -> OfflineResult:
        summary = batch_convert(self.source, self.target, self.model, self.settings, jobs=1,
                                overwrite=self.overwrite, progress=self.progress.emit, cancel=self._cancel)
        outputs = [self.target / path.relative_to(self.source) for path in summary.converted]
        return OfflineResult(outputs, summary.lines(), summary.cancelled)


class FilePlayer(QObject):
    """Plays a MIDI file out of the live bridge's output. The bridge's worker sends it (the port
    has one writer), beside the live harmony; the file is read here, in a thread of its own.
    `finished` says why it ended; `stop()` ends it and releases every note it started."""
    finished = pyqtSignal(str)   # why it ended, one line
    _loaded = pyqtSignal(object)  # the events, or the reason they could not be read

    def __init__(self, path: Path, bridge, parent=None):
        super().__init__(parent)
        self.path = Path(path)
        self.bridge = bridge
        self._state = "loading"   # loading, playing, stopped, done
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._check)
        self._loaded.connect(self._start)

    def start(self) -> None:
        threading.Thread(target=self._load, name="bachbridge-file-reader", daemon=True).start()

    def stop(self) -> None:
        if self._state in ("loading", "playing"):
            if self._state == "playing":
                self.bridge.stop_playing()
            self._finish("stopped", f"stopped playing {self.path.name}")

    def playing(self) -> bool:
        return self._state in ("loading", "playing")

    def _load(self) -> None:
        try:
            self._loaded.emit(file_events(self.path))
        except (OSError, ValueError, EOFError) as error:  # a bad file
            self._loaded.emit(f"could not play {self.path.name}: {error}")

    def _start(self, events) -> None:
        if self._state != "loading":
            return  # stopped while reading
        if isinstance(events, str):
            self._finish("done", events)
            return
        self.bridge.play(events)
        self._state = "playing"
        self._timer.start()

    def _check(self) -> None:
        if not self.bridge.playing:
            self._finish("done", f"played {self.path.name}")

    def _finish(self, state: str, why: str) -> None:
        self._state = state
        self._timer.stop()
        self.finished.emit(why)
