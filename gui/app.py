"""`bachbridge gui` / `bachbridge-gui`: the window and the live bridge.

    bachbridge-gui                        # the window; the bridge on virtual ports, as last time
    bachbridge-gui --api jack --connect-in "DAW:out 1"
    bachbridge-gui --screenshot window.png   # render offscreen (a chorale in the roll) and exit
    bachbridge-gui --quit-after 5 --grab shown.png   # close (as its close button does) 5 s after shown
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

EXAMPLE_MELODY = Path(__file__).resolve().parent.parent / "bridge" / "examples" / "chorale_melody.mid"
SCREENSHOT_SIZE = (1360, 860)
ORGANIZATION, APPLICATION = "bachbridge", "bachbridge"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bachbridge gui", description="The bachbridge window and live bridge.")
    p.add_argument("--screenshot", metavar="PNG", help="render the window offscreen to PNG and exit")
    p.add_argument("--model", metavar="NAME_OR_ONNX", help="a shipped model's name or an exported .onnx "
                                                           "(default: as last time, else coconet-live)")
    p.add_argument("--api", choices=["auto", "alsa", "jack", "coremidi", "winmm"], help="MIDI system")
    p.add_argument("--in", dest="in_name", metavar="NAME", help="name of our virtual input port")
    p.add_argument("--out", dest="out_name", metavar="NAME", help="name of our virtual output port")
    p.add_argument("--connect-in", metavar="PORT", help="take the melody from this existing port")
    p.add_argument("--connect-out", metavar="PORT", help="send to this existing port")
    p.add_argument("--no-bridge", action="store_true", help="open no MIDI ports (offline work only)")
    p.add_argument("--quit-after", type=float, metavar="SECONDS",
                   help="close the window this long after it is shown (a check that it opens)")
    p.add_argument("--grab", metavar="PNG", help="with --quit-after: save the window as drawn just before")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot and "QT_QPA_PLATFORM" not in os.environ:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from gui.systemcheck import window_problem

    problem = window_problem()   # before Qt, whose answer would be an abort
    if problem:
        print(f"bachbridge gui: {problem[0]}", file=sys.stderr)
        return 1

    from PyQt6.QtCore import QSettings, QTimer

    # SIGINT/SIGTERM close the window like its close button (notes released, state saved); one
    # that comes while the window is being made (the bridge may be playing already) closes it
    # as soon as it is there
    windows, signalled = [], []

    def close_window(*_):
        signalled.append(True)
        for window in windows:
            window.close()

    if not args.screenshot:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, close_window)
    store = QSettings(ORGANIZATION, APPLICATION)
    ports = _ports_from(args, store)
    if not (args.screenshot or args.no_bridge):
        # first the bridge's process: it loads its model and opens its ports while the window is
        # made, and the window takes it over (see gui.session.prelaunch)
        from gui import session, state

        restored, _ = state.restored_preset(store)
        session.prelaunch(args.model or restored.model, restored.config, restored.settings,
                          ports or state.restored_ports(store))

    from PyQt6.QtWidgets import QApplication

    from gui.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    apply_theme(app)
    if args.screenshot:
        return screenshot(Path(args.screenshot), args.model)

    from gui.window import MainWindow

    window = MainWindow(store, model=args.model, ports=ports, start_bridge=not args.no_bridge)
    windows.append(window)
    window.show()
    if signalled:
        window.close()
        return 0
    if args.quit_after is not None:
        QTimer.singleShot(round(args.quit_after * 1000), lambda: close_shown(window, args.grab))
    # Qt's loop runs no Python: a timer lets the interpreter see a signal
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    return app.exec()


def close_shown(window, grab: str | None) -> None:
    """The end of --quit-after: the window as drawn saved to `grab`, then closed like its close button."""
    if grab:
        Path(grab).parent.mkdir(parents=True, exist_ok=True)
        saved = window.grab().save(grab, "PNG")
        print(f"window grabbed to {grab}" if saved else f"bachbridge gui: could not write {grab}",
              file=sys.stdout if saved else sys.stderr)
    window.close()


def _ports_from(args, store):
    """The ports named on the command line, over those of last time."""
    from bridge.ports import DEFAULT_IN, DEFAULT_OUT
    from gui.session import PortChoice

    named = (args.api, args.in_name, args.out_name, args.connect_in, args.connect_out)
    if not any(named):
        return None
    return PortChoice(api=None if args.api in (None, "auto") else args.api, in_name=args.in_name or DEFAULT_IN,
                      out_name=args.out_name or DEFAULT_OUT, connect_in=args.connect_in,
                      connect_out=args.connect_out)


def screenshot(path: Path, model: str | None = None) -> int:
    """The window with default knobs (the user's saved state untouched), no ports, and the example
    chorale, harmonized by the model, in the roll as if it were being played; saved to `path`."""
    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QApplication

    from gui.window import MainWindow

    from PyQt6.QtCore import qInstallMessageHandler

    # the offscreen platform says it cannot pass size hints to a window system: true, and no news
    qInstallMessageHandler(lambda kind, context, text: None if "propagateSizeHints" in text
                           else print(text, file=sys.stderr))
    app = QApplication.instance()
    with tempfile.TemporaryDirectory() as scratch:
        store = QSettings(str(Path(scratch) / "screenshot.ini"), QSettings.Format.IniFormat)
        window = MainWindow(store, model=model, presets_dir=Path(scratch) / "presets", start_bridge=False)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        window.session.wait_idle(120)   # the model loaded (its metadata shown) and ports listed
        app.processEvents()
        demo_in_roll(window)
        window.header.status_label.setText("screenshot: no MIDI ports opened  ·  the roll shows the example chorale")
        app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(path), "PNG")
        window.close()
    if not ok:
        print(f"bachbridge gui: could not write {path}", file=sys.stderr)
        return 2
    print(f"screenshot written to {path}")
    return 0


def demo_in_roll(window, bpm: float = 92.0, at_step: int = 58) -> None:
    """Feed the roll the example melody harmonized by the window's engine, as monitor events
    would come while it plays, and freeze the roll `at_step` 16ths in (notes there still sound)."""
    import time

    from bridge.engines import REST
    from bridge.midifile import quantize, read_melody
    from gui.pianoroll import NS_PER_MINUTE
    from gui.panels.meters import position_text

    engine = window.session.engine
    melody, _ = quantize(read_melody(EXAMPLE_MELODY))
    roll = engine.harmonize(melody.pitches[: at_step + 8, 0], window.session.settings.replace(steps=12, seed=3)).pitches
    step_ns = NS_PER_MINUTE / (bpm * 4)
    start = time.perf_counter_ns()
    now = int(start + at_step * step_ns)
    events = []
    for voice in range(4):
        column = roll[:, voice].tolist()
        t = 0
        while t < len(column):
            pitch, end = column[t], t + 1
            while end < len(column) and column[end] == pitch:
                end += 1
            if pitch != REST and t <= at_step:
                events.append((int(start + t * step_ns), voice, pitch, 80 if voice == 0 else 72))
                if end <= at_step:
                    events.append((int(start + end * step_ns) - 1, voice, pitch, 0))
            t = end
    events.sort(key=lambda e: (e[0], e[3] > 0))  # note-offs before note-ons at the same moment
    window.roll.freeze(now)
    window.roll.set_tempo(bpm, position_steps=at_step, at_ns=now)
    window.roll.feed(events)
    window.meters.tempo_meter.show_value(f"{bpm:.1f}", "internal")
    window.meters.position_meter.show_value(position_text(at_step), "bar.beat.16th")


if __name__ == "__main__":
    sys.exit(main())
