"""The `bachbridge` command line (also `python -m bridge`).

A bad file or argument ends with exit status 2 and one line on stderr naming the file and the
reason: no traceback, no output file left behind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bridge.errors import BadInput
from bridge.settings import MODEL_KNOBS, Settings


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def add_engine_options(p: argparse.ArgumentParser, default: str = "coconet") -> None:
    from bridge.engines import engine_names

    g = p.add_argument_group("engine")
    g.add_argument("--engine", default=default, choices=engine_names(),
                   help=f"a model that ships with bachbridge (default: {default})")
    g.add_argument("--model", metavar="X.onnx", help="an exported model file instead of --engine")


# the sampling knobs each file and live command takes (--parallel-penalty -> parallel_penalty)
KNOB_FLAGS = MODEL_KNOBS + ("seed",)


def add_knobs(p: argparse.ArgumentParser, defaults: Settings = Settings(), files: bool = True) -> None:
    """The sampling knobs, with `defaults`' values shown; `files=False` leaves out the file-only
    --track. A knob left out is None in the arguments: `settings_from` gives it the model's own
    default where the model has one (`Engine.default_settings`), else `defaults`' value."""
    d = defaults
    own = " or the model's own"
    g = p.add_argument_group("sampling knobs")
    g.add_argument("--temperature", type=float,
                   help=f"softmax temperature; 0 = likeliest pitch (default {d.temperature}{own})")
    g.add_argument("--steps", type=int, help=f"Gibbs steps (default {d.steps}{own})")
    g.add_argument("--pmax", type=float, help=f"first step's resampled share (default {d.pmax}{own})")
    g.add_argument("--pmin", type=float, help=f"last steps' resampled share (default {d.pmin}{own})")
    g.add_argument("--alpha", type=float,
                   help=f"fraction of the steps over which the share falls (default {d.alpha}{own})")
    g.add_argument("--candidates", type=int,
                   help=f"chains sampled together; the likeliest wins (default {d.candidates}{own})")
    g.add_argument("--parallel-penalty", type=float,
                   help="nats taken off a pitch for each consecutive perfect fifth or octave it would "
                        f"make; 0 = off (default {d.parallel_penalty}{own})")
    g.add_argument("--key", help=f"keep alto, tenor, bass in a key: off, auto, or e.g. Bb, F#m (default {d.key}{own})")
    g.add_argument("--top-p", type=float,
                   help=f"phrase engine: draw only among the likeliest tokens that make up this share (default {d.top_p}{own})")
    g.add_argument("--repeat-limit", type=int,
                   help=f"phrase engine: strike one pitch at most this many times in a row; 0 = any (default {d.repeat_limit}{own})")
    g.add_argument("--harmonizer",
                   help=f"phrase engine: the voices under its melody, a model that fills or 'chords' (default {d.harmonizer}{own})")
    g.add_argument("--seed", type=int, help="random seed: the same seed gives the same result")
    if files:
        g.add_argument("--track", type=int, default=None, metavar="N",
                       help="take the melody from track N (0-based) instead of the top line of all tracks")


def settings_from(args, base: Settings = Settings()) -> Settings:
    """`base` (the engine's `default_settings`) with the knobs given on the command line."""
    return base.replace(**{name: getattr(args, name) for name in KNOB_FLAGS if getattr(args, name) is not None})


def model_from(args) -> str:
    return args.model or args.engine


def engine_and_settings(args):
    """The file commands' engine (--engine or --model) and the knobs given laid on its own defaults."""
    from bridge.engines import load_engine

    engine = load_engine(model_from(args))
    return engine, settings_from(args, engine.default_settings())


def cmd_harmonize(args) -> int:
    from bridge.convert import harmonize_file

    engine, settings = engine_and_settings(args)
    paths = harmonize_file(Path(args.input), Path(args.output), engine, settings, track=args.track,
                           variants=args.variants)
    if args.variants > 1:
        print("\n".join(map(str, paths)))
    return 0


def cmd_batch(args) -> int:
    from tqdm import tqdm

    from bridge.convert import batch_convert
    from bridge.engines import model_settings

    settings = settings_from(args, model_settings(model_from(args)))
    if args.jobs is not None and args.jobs < 1:
        raise BadInput(f"--jobs must be >= 1, not {args.jobs}")
    if args.ray is not None:
        from bridge.raybatch import ray_batch_convert, require_ray

        require_ray()   # before the progress bar: without Ray the one line says how to get it
    bar = tqdm(unit="file", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    options = dict(overwrite=args.overwrite, track=args.track, progress=progress)
    try:
        if args.ray is None:
            summary = batch_convert(Path(args.in_dir), Path(args.out_dir), model_from(args), settings,
                                    jobs=args.jobs or 1, **options)
        else:
            summary = ray_batch_convert(Path(args.in_dir), Path(args.out_dir), model_from(args), settings,
                                        address=args.ray, jobs=args.jobs, **options)
    finally:
        bar.close()
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def cmd_eval(args) -> int:
    from tqdm import tqdm

    from bridge.engines import load_engine

    data = Path(args.data)
    if not data.is_file():
        raise BadInput("no such data file", data)
    engine = load_engine(model_from(args))
    bars = []   # the progress bar, from the first chorale on: an error before it prints alone

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="chorale", file=sys.stderr, dynamic_ncols=True, disable=args.json))
        bars[0].n = done
        bars[0].refresh()

    try:
        figures = engine.evaluate(data, args.split, limit=args.limit, progress=progress)
    except (OSError, ValueError, KeyError) as error:
        raise BadInput(f"cannot read the {args.split!r} split: {error}", data) from None
    finally:
        for bar in bars:
            bar.close()
    figures = {"engine": engine.name, "data": data.name, "split": args.split, **figures}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
    return 0


def cmd_generate(args) -> int:
    """Continue a prime (a four-voice file, or a melody whose lower voices are filled in too) or
    start from nothing, for --bars bars; every engine can (Engine.generate)."""
    import numpy as np

    from bridge.convert import atomic_write, read_prime
    from bridge.midifile import write_voices
    from bridge.score import Score

    if args.bars < 1:
        raise BadInput(f"--bars must be >= 1, not {args.bars}")
    output = Path(args.output)
    if not output.parent.is_dir():
        raise BadInput("output folder does not exist", output)
    prime, known = Score.of(np.zeros((0, 4), dtype=np.int16)), np.zeros((0, 4), dtype=bool)
    if args.prime:
        source = Path(args.prime)
        if not source.is_file():
            raise BadInput("no such file", source)
        prime, known = read_prime(source)
    engine, settings = engine_and_settings(args)
    score = engine.generate(prime, known, args.bars * prime.meter[0], settings)
    atomic_write(output, lambda temp: write_voices(temp, score, bpm=args.bpm))
    return 0


def cmd_continue(args) -> int:
    from bridge.convert import continue_file

    engine, settings = engine_and_settings(args)
    for path in continue_file(Path(args.input), Path(args.output), engine, settings, args.bars,
                              variants=args.variants, track=args.track):
        print(path)
    return 0


def cmd_regenerate(args) -> int:
    from bridge.convert import parse_bars, parse_voices, regenerate_file

    bars, voices = parse_bars(args.bars), parse_voices(args.voices)
    engine, settings = engine_and_settings(args)
    for path in regenerate_file(Path(args.input), Path(args.output), engine, settings, bars, voices, args.variants):
        print(path)
    return 0


def cmd_ports(args) -> int:
    from bridge.ports import api_status, list_apis, list_ports, pick_api

    apis = list_apis()
    print(f"MIDI APIs compiled in: {', '.join(apis) or 'none'}")
    choice = pick_api()
    print(f"auto picks: {choice.api} ({choice.reason})" if choice.api else f"auto picks: nothing ({choice.reason})")
    for api in apis:
        usable, why = api_status(api)
        if not usable:
            print(f"\n{api}: not usable: {why}")
            continue
        try:
            ports = list_ports(api)
        except BadInput as error:
            print(f"\n{api}: cannot list ports: {error}")
            continue
        print(f"\n{api}: {why}")
        for key, label in (("inputs", "inputs (bachbridge can receive from; --connect-in)"),
                           ("outputs", "outputs (bachbridge can send to; --connect-out)")):
            print(f"  {label}:")
            for name in ports[key] or ["(none)"]:
                print(f"    {name}")
    return 0


def _seconds_since_process_start() -> float:
    """How long this process has run (Linux: from /proc; elsewhere 0, i.e. counted from here)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return max(0.0, uptime_s - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def live_model(args) -> tuple[str, str | None]:
    """The model `live` runs, and a note for the user when the default had to fall back."""
    from models import shipped_model

    if args.model:
        return args.model, None
    if args.engine:
        return args.engine, None
    if args.mode == "respond":   # the answer continues the phrase: the phrase engine's work
        return "phrase", None
    if shipped_model("coconet-live").is_file():
        return "coconet-live", None
    return "coconet", "the coconet-live model is not there (not trained yet?): using coconet"


def _channel_list(text: str) -> tuple[int, int, int]:
    """'2,3,4' (MIDI channels 1-16 for alto, tenor, bass) or '2' (all on one) -> 0-based triple."""
    try:
        channels = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not channel numbers: {text!r}") from None
    if len(channels) == 1:
        channels *= 3
    if len(channels) != 3 or not all(1 <= c <= 16 for c in channels):
        raise argparse.ArgumentTypeError(f"give one channel, or three (alto,tenor,bass), each 1-16: {text!r}")
    return tuple(c - 1 for c in channels)


def _midi_channel(text: str) -> int:
    try:
        channel = int(text)
    except ValueError:
        channel = 0
    if not 1 <= channel <= 16:
        raise argparse.ArgumentTypeError(f"a MIDI channel is 1-16, not {text!r}")
    return channel - 1


def cmd_live(args) -> int:
    import signal
    import threading
    import time

    t0 = time.perf_counter() - _seconds_since_process_start()
    stop = threading.Event()
    # from here on SIGINT and SIGTERM only ask for a clean stop (also while warming up)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    from bridge.engines import load_engine
    from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig
    from bridge.live.learn import parse_binding
    from bridge.ports import auto_api, pick_api
    from bridge.scheduling import cpus_idle_warning

    model, note = live_model(args)
    if note:
        print(f"bachbridge: {note}", file=sys.stderr)
    config = LiveConfig(mode=args.mode, lookahead_beats=args.lookahead, speculate=not args.no_speculate,
                        clock=args.clock, bpm=args.bpm, echo=not args.no_echo, channels=args.channels,
                        echo_channel=args.echo_channel, in_channel=args.in_channel,
                        context_steps=args.context, respond_after_beats=args.respond_after,
                        answer_bars=args.answer_bars, respond_cc=args.respond_cc,
                        knob_controls=tuple(parse_binding(text) for text in args.cc))
    api = args.api
    if api == "auto":
        api = auto_api()
        print(f"MIDI API: {api} ({pick_api().reason})")
    # one onnxruntime thread: the cores are shared with JACK/the DAW, and the live tensors are
    # too small for a second thread to pay for its wake-ups
    engine = load_engine(model, threads=args.threads)
    settings = settings_from(args, engine.default_settings(LIVE_SETTINGS))
    bridge = Bridge(engine, config, settings, api=api, in_name=args.in_name, out_name=args.out_name,
                    connect_in=args.connect_in, connect_out=args.connect_out, cpus_awake=not args.let_cpus_sleep)
    try:
        bridge.start(t0)
        stats = bridge.stats.snapshot()
        if stats.engine_errors:
            print(f"bachbridge: the engine failed its warm-up ({stats.last_engine_error}): "
                  "notes pass through until it works", file=sys.stderr)
        inp, out = bridge.input, bridge.output
        in_label = repr(inp.name) + (f" (from {inp.connected_to!r})" if inp.connected_to else "")
        out_label = repr(out.name) + (f" (to {out.connected_to!r})" if out.connected_to else "")
        print(f"ports up in {bridge.ports_up_s * 1e3:.0f} ms: {in_label} -> {out_label} ({inp.api}); "
              f"engine {engine.name}, warm-up {bridge.warm_up_s * 1e3:.0f} ms; Ctrl-C to stop", flush=True)
        warning = None if args.let_cpus_sleep else cpus_idle_warning(bridge.cpus_awake)
        if warning:
            print(f"bachbridge: {warning}", file=sys.stderr)
        while not stop.wait(0.25):
            pass
    finally:
        bridge.close()
    s = bridge.stats.snapshot()
    latency = (f"; note-on -> harmony p50 {s.p50_latency_ms:.2f} ms, p99 {s.p99_latency_ms:.2f} ms"
               if s.latencies else "")
    speculation = (f"; speculation hits {s.speculation_hits} of {s.speculation_lookups}"
                   if s.speculation_lookups else "")
    realtime = "; realtime worker" if bridge.worker_realtime else ""
    print(f"stopped: {s.notes_in} notes in, {s.harmony_notes_out} harmony notes out, "
          f"{s.engine_errors} engine errors, {s.ignored} messages ignored{latency}{speculation}{realtime}", flush=True)
    if s.last_engine_error:
        print(f"bachbridge: last engine error: {s.last_engine_error}", file=sys.stderr)
    if args.stats_json:
        import dataclasses

        figures = dataclasses.asdict(s) | {"ports_up_s": bridge.ports_up_s, "warm_up_s": bridge.warm_up_s,
                                           "latencies_ms": bridge.stats.latencies_ms(),
                                           "phrase_timing_ms": bridge.stats.timing_errors_ms()}
        Path(args.stats_json).write_text(json.dumps(figures, indent=1))
    return 0


def add_live_options(p: argparse.ArgumentParser) -> None:
    from bridge.clock import MODES as CLOCK_MODES
    from bridge.engines import engine_names
    from bridge.live import LIVE_SETTINGS, MODES, LiveConfig
    from bridge.ports import DEFAULT_IN, DEFAULT_OUT

    d = LiveConfig()
    g = p.add_argument_group("ports")
    g.add_argument("--api", default="auto", choices=["auto", "alsa", "jack", "coremidi", "winmm"],
                   help="MIDI system (default auto: JACK when a server runs, else ALSA, CoreMIDI, WinMM)")
    g.add_argument("--in", dest="in_name", default=DEFAULT_IN, metavar="NAME",
                   help=f"name of our input port (default {DEFAULT_IN!r})")
    g.add_argument("--out", dest="out_name", default=DEFAULT_OUT, metavar="NAME",
                   help=f"name of our output port (default {DEFAULT_OUT!r})")
    g.add_argument("--connect-in", metavar="PORT", help="take the melody from this existing port (name or part of it)")
    g.add_argument("--connect-out", metavar="PORT", help="send to this existing port (e.g. a loopMIDI port)")
    g = p.add_argument_group("playing")
    g.add_argument("--mode", default=d.mode, choices=MODES,
                   help="note: answer each melody note at once; phrase: wait --lookahead beats, sample "
                        "each phrase with the full annealed schedule, and play everything that much "
                        "later (set the melody track's delay in the DAW to match: see the README); "
                        "respond: when the player stops, answer the phrase with one that continues it "
                        "(default note)")
    g.add_argument("--lookahead", type=float, default=d.lookahead_beats, metavar="BEATS",
                   help=f"phrase mode's delay, in beats (default {d.lookahead_beats:g})")
    g.add_argument("--respond-after", type=float, default=d.respond_after_beats, metavar="BEATS",
                   help=f"respond mode: answer after this many beats of silence (default {d.respond_after_beats:g})")
    g.add_argument("--answer-bars", type=int, default=d.answer_bars, metavar="N",
                   help=f"respond mode: bars the answer lasts (default {d.answer_bars})")
    g.add_argument("--respond-cc", type=int, default=None, metavar="CC",
                   help="respond mode: this controller (a footswitch, e.g. 64) pressed asks for the answer at once")
    g.add_argument("--cc", action="append", default=[], metavar="KNOB=CC",
                   help="move a knob from the DAW: a controller 0..119 spans its range, e.g. temperature=21 "
                        "(program change for a knob with choices: key=program); repeat for more. Knobs: "
                        "temperature, pmax, pmin, alpha, steps, candidates, parallel_penalty, top_p, repeat_limit, "
                        "key, mode, lookahead, speculate, engine")
    g.add_argument("--no-speculate", action="store_true",
                   help="note mode: do not work out the likeliest next answers between notes")
    g.add_argument("--clock", default=d.clock, choices=CLOCK_MODES,
                   help="auto: the DAW's MIDI clock when it runs, else --bpm; midi; internal (--bpm); "
                        "free: each note is the next 16th (default auto)")
    g.add_argument("--bpm", type=float, default=d.bpm, help=f"internal tempo (default {d.bpm:g})")
    g.add_argument("--context", type=int, default=d.context_steps, metavar="STEPS",
                   help=f"16ths of the past the model is shown (default {d.context_steps}: a bar)")
    g.add_argument("--channels", type=_channel_list, default=d.channels, metavar="A,T,B",
                   help="MIDI channels of alto, tenor, bass, or one for all (default 2,3,4)")
    g.add_argument("--echo-channel", type=_midi_channel, default=d.echo_channel, metavar="N",
                   help="MIDI channel the melody is echoed on (default 1)")
    g.add_argument("--no-echo", action="store_true", help="do not send the melody on")
    g.add_argument("--in-channel", type=_midi_channel, default=None, metavar="N",
                   help="take melody notes from this MIDI channel only (default: any)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", default=None, choices=engine_names(),
                   help="a model that ships with bachbridge (default: phrase in respond mode, else "
                        "coconet-live when it is there, else coconet)")
    g.add_argument("--model", metavar="X.onnx", help="an exported model file instead of --engine")
    g.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    g.add_argument("--let-cpus-sleep", action="store_true",
                   help="let the CPUs idle deep between notes: less power, later answers (default: kept "
                        "awake while the bridge runs, where the OS lets it; see the README)")
    p.add_argument("--stats-json", metavar="FILE", help="on exit, write the bridge's figures (latencies, "
                   "speculation, phrase timing, ports-up time) to FILE as JSON")
    add_knobs(p, defaults=LIVE_SETTINGS, files=False)
    p.epilog = ("--steps sets phrase mode's Gibbs steps; note mode fills in one step, whose three voices "
                "the coconet engine draws one after another, top down (one network call each).")


VARIANTS_HELP = ("write K files, each its own draw, OUTPUT-1 the likeliest where the engine can rank them "
                 "(default 1)")


def _harmonize_options(h: argparse.ArgumentParser) -> None:
    h.add_argument("input", help="a MIDI file with the melody")
    h.add_argument("-o", "--output", required=True,
                   help="the four-voice MIDI file to write (with --variants K: OUTPUT-1 .. -K)")
    h.add_argument("--variants", type=int, default=1, help=VARIANTS_HELP)
    add_engine_options(h)
    add_knobs(h)
    h.set_defaults(run=cmd_harmonize)


def _batch_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("in_dir")
    b.add_argument("out_dir")
    b.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default 1); with --ray, workers: the local Ray instance's CPUs "
                        "(default: all), or at most this many on a cluster (default: one per CPU)")
    b.add_argument("--overwrite", action="store_true", help="redo files already in OUT_DIR")
    b.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="convert on Ray (pip install bachbridge[scale]): alone, a local Ray instance; with "
                        "ADDRESS (HEAD:6379, or auto), the cluster there, whose every node has bachbridge and "
                        "its models installed")
    add_engine_options(b)
    add_knobs(b)
    b.set_defaults(run=cmd_batch)


def _eval_options(e: argparse.ArgumentParser) -> None:
    e.add_argument("--data", required=True, help="e.g. ../shared/data/jsb/Jsb16thSeparated.npz")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--limit", type=int, default=None, help="only the first N chorales")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_engine_options(e)
    e.set_defaults(run=cmd_eval)


def _generate_options(g: argparse.ArgumentParser) -> None:
    g.add_argument("-o", "--output", required=True, help="the four-voice MIDI file to write")
    g.add_argument("--prime", metavar="IN.mid", help="music to continue: four voices, or a melody (harmonized too)")
    g.add_argument("--bars", type=int, default=8, help="bars to add, in the prime's meter (default 8 of 4/4)")
    g.add_argument("--bpm", type=float, default=100.0, help="tempo of the file written (default 100)")
    add_engine_options(g)
    add_knobs(g, files=False)
    g.set_defaults(run=cmd_generate)


def _continue_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("input", help="a MIDI file: a melody, or four voices")
    c.add_argument("-o", "--output", required=True, help="the MIDI file to write (with --variants K: OUTPUT-1 .. -K)")
    c.add_argument("--bars", type=int, default=4, help="bars to add, in the file's meter (default 4)")
    c.add_argument("--variants", type=int, default=1, help=VARIANTS_HELP)
    add_engine_options(c, default="phrase")
    add_knobs(c)
    c.set_defaults(run=cmd_continue)


def _regenerate_options(r: argparse.ArgumentParser) -> None:
    r.add_argument("input", help="a four-voice MIDI file (such as harmonize writes)")
    r.add_argument("--bars", required=True, help="the bars to draw again, counted from 1 in the file's meter: 3 or 3-4")
    r.add_argument("--voices", default="ATB", help="which voices, letters of SATB (default ATB: the melody kept)")
    r.add_argument("-o", "--output", required=True, help="the MIDI file to write (with --variants K: OUTPUT-1 .. -K)")
    r.add_argument("--variants", type=int, default=1, help=VARIANTS_HELP)
    add_engine_options(r)
    add_knobs(r, files=False)
    r.set_defaults(run=cmd_regenerate)


def _live_options(lv: argparse.ArgumentParser) -> None:
    add_live_options(lv)
    lv.set_defaults(run=cmd_live)


# command -> (help, what builds its options)
COMMANDS = {
    "harmonize": ("melody in, four voices out", _harmonize_options),
    "batch": ("harmonize every .mid/.midi under a folder", _batch_options),
    "eval": ("likelihood figures on a held-out split", _eval_options),
    "generate": ("continue a prime, or write from nothing, in four voices", _generate_options),
    "continue": ("a MIDI file kept exactly, with bars of continuation after it", _continue_options),
    "regenerate": ("draw chosen bars and voices of a four-voice file again, the rest kept exactly", _regenerate_options),
    "ports": ("MIDI APIs compiled in, which one auto picks, and the ports each sees",
              lambda po: po.set_defaults(run=cmd_ports)),
    "live": ("the live bridge without a window: melody in, harmony out, until Ctrl-C", _live_options),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (the command about to run), the other commands are
    listed but their options left unbuilt: some import what they run (the live options, the live
    bridge), which a one-file `harmonize` should not pay for at start-up."""
    p = OneLineParser(prog="bachbridge", description="Neural Bach-chorale harmony, live and offline.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, (help_text, build) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if only is None or only == name:
            build(command)
    sub.add_parser("gui", help="the control window (the same as bachbridge-gui; its options: bachbridge gui --help)",
                   add_help=False)
    return p


# commands that only read and write files: once they return, their output is closed and nothing
# else runs, so the process ends at once (interpreter shutdown tears numba's compiled kernels
# down for about 0.2 s, a fifth of a one-file harmonize)
QUICK_EXIT_COMMANDS = ("harmonize", "continue", "generate", "regenerate")


def entry() -> None:
    """The `bachbridge` command (and `python -m bridge`): `main`, then exit."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] and argv[0] in QUICK_EXIT_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def _ray_before_folders(argv: list[str]) -> list[str]:
    """`batch --ray IN OUT`: argparse would take IN for --ray's address. A word after --ray that
    is no Ray address (auto, HOST:PORT, ray://...) but a path that exists is the input folder."""
    out = list(argv)
    if out[:1] != ["batch"]:
        return out
    for i, word in enumerate(out[:-1]):
        after = out[i + 1]
        if word == "--ray" and after not in ("auto", "local") and Path(after).exists():
            out[i] = "--ray=local"
    return out


def main(argv=None) -> int:
    argv = _ray_before_folders(sys.argv[1:] if argv is None else list(argv))
    if argv[:1] == ["gui"]:
        from gui.app import main as gui_main

        return gui_main(argv[1:])
    args = build_parser(only=next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    try:
        return args.run(args)
    except BadInput as error:
        print(f"bachbridge: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bachbridge: interrupted", file=sys.stderr)
        return 130
