"""Offline work from the window, off the GUI thread: harmonize one file, convert a folder, and play
a result out of the bridge's output port.

Each runs in its own Python thread and reports through Qt signals (queued into the GUI thread).
Offline engines are loaded in the job's thread with one onnxruntime thread, so the live bridge
keeps a core for itself.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido
from PyQt6.QtCore import QObject, pyqtSignal

from bridge.convert import batch_convert, harmonize_file
from bridge.engines import load_engine
from bridge.errors import BadInput
from bridge.settings import Settings


@dataclass
class OfflineResult:
    outputs: list[Path] = field(default_factory=list)   # files written
    lines: list[str] = field(default_factory=list)      # the summary, for the status bar
    cancelled: bool = False


class OfflineJob(QObject):
    """One offline conversion. `start()` runs it; `cancel()` stops it at the next file boundary
    (a single file: its result is discarded, the target left as it was)."""
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
    """Plays a MIDI file out of a `send(bytes)` (the bridge's output port) in real time, in its own
    thread; `stop()` ends it and releases every note it started."""
    finished = pyqtSignal(str)   # why it ended, one line

    def __init__(self, path: Path, send, parent=None):
        super().__init__(parent)
        self.path = Path(path)
        self._send = send
        self._stop = threading.Event()
        self._sounding: set[tuple[int, int]] = set()
        self._thread = threading.Thread(target=self._run, name="bachbridge-player", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def playing(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        why = f"played {self.path.name}"
        try:
            midi = mido.MidiFile(self.path)
            next_at = time.perf_counter()
            for message in midi:  # mido gives each message's delta time in seconds (tempo map applied)
                next_at += message.time
                if self._stop.wait(max(0.0, next_at - time.perf_counter())):
                    why = f"stopped playing {self.path.name}"
                    break
                if message.is_meta or message.type == "sysex":
                    continue
                self._play(message)
        except (OSError, ValueError, EOFError) as error:  # a bad file, or the port closed under us
            why = f"could not play {self.path.name}: {error}"
        finally:
            self._release()
        self.finished.emit(why)

    def _play(self, message: mido.Message) -> None:
        data = bytes(message.bytes())
        self._send(data)
        if message.type == "note_on" and message.velocity > 0:
            self._sounding.add((message.channel, message.note))
        elif message.type in ("note_off", "note_on"):
            self._sounding.discard((message.channel, message.note))

    def _release(self) -> None:
        for channel, note in sorted(self._sounding):
            try:
                self._send(bytes((0x80 | channel, note, 0)))
            except ValueError:
                break  # the port is closed: closing it released everything already
        self._sounding.clear()
