"""The `bachbridge` command line (also `python -m bridge`).

A bad file or argument ends with exit status 2 and one line on stderr naming the file and the
reason: no traceback, no output file left behind.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge.errors import BadInput
from bridge.settings import Settings


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    from bridge.engines import engine_names

    g = p.add_argument_group("engine")
    g.add_argument("--engine", default="coconet", choices=engine_names(),
                   help="a model that ships with bachbridge (default: coconet)")
    g.add_argument("--model", metavar="X.onnx", help="an exported model file instead of --engine")


def add_knobs(p: argparse.ArgumentParser) -> None:
    d = Settings()
    g = p.add_argument_group("sampling knobs")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help=f"softmax temperature; 0 = likeliest pitch (default {d.temperature})")
    g.add_argument("--steps", type=int, default=d.steps, help=f"Gibbs steps (default {d.steps})")
    g.add_argument("--pmax", type=float, default=d.pmax, help=f"first step's resampled share (default {d.pmax})")
    g.add_argument("--pmin", type=float, default=d.pmin, help=f"last steps' resampled share (default {d.pmin})")
    g.add_argument("--alpha", type=float, default=d.alpha,
                   help=f"fraction of the steps over which the share falls (default {d.alpha})")
    g.add_argument("--candidates", type=int, default=d.candidates,
                   help="chains sampled together; the likeliest wins (default 1)")
    g.add_argument("--parallel-penalty", type=float, default=d.parallel_penalty,
                   help="nats taken off a pitch for each consecutive perfect fifth or octave it would "
                        f"make; 0 = off (default {d.parallel_penalty})")
    g.add_argument("--key", default=d.key, help="keep alto, tenor, bass in a key: off, auto, or e.g. Bb, F#m (default off)")
    g.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same result")
    g.add_argument("--track", type=int, default=None, metavar="N",
                   help="take the melody from track N (0-based) instead of the top line of all tracks")


def settings_from(args) -> Settings:
    return Settings(temperature=args.temperature, steps=args.steps, pmax=args.pmax, pmin=args.pmin,
                    alpha=args.alpha, candidates=args.candidates, key=args.key,
                    parallel_penalty=args.parallel_penalty, seed=args.seed)


def model_from(args) -> str:
    return args.model or args.engine


def cmd_harmonize(args) -> int:
    from bridge.convert import harmonize_file
    from bridge.engines import load_engine

    settings = settings_from(args)
    engine = load_engine(model_from(args))
    harmonize_file(Path(args.input), Path(args.output), engine, settings, track=args.track)
    return 0


def cmd_batch(args) -> int:
    from tqdm import tqdm

    from bridge.convert import batch_convert

    settings = settings_from(args)
    if args.jobs < 1:
        raise BadInput(f"--jobs must be >= 1, not {args.jobs}")
    bar = tqdm(unit="file", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = batch_convert(Path(args.in_dir), Path(args.out_dir), model_from(args), settings,
                                jobs=args.jobs, overwrite=args.overwrite, track=args.track, progress=progress)
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
    with tqdm(unit="chorale", file=sys.stderr, dynamic_ncols=True, disable=args.json) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            figures = engine.evaluate(data, args.split, limit=args.limit, progress=progress)
        except (OSError, ValueError, KeyError) as error:
            raise BadInput(f"cannot read the {args.split!r} split: {error}", data) from None
    figures = {"engine": engine.name, "data": data.name, "split": args.split, **figures}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>14}: {value:.4f}" if isinstance(value, float) else f"{key:>14}: {value}")
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


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="bachbridge", description="Neural Bach-chorale harmony, live and offline.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    h = sub.add_parser("harmonize", help="melody in, four voices out")
    h.add_argument("input", help="a MIDI file with the melody")
    h.add_argument("-o", "--output", required=True, help="the four-voice MIDI file to write")
    add_engine_options(h)
    add_knobs(h)
    h.set_defaults(run=cmd_harmonize)

    b = sub.add_parser("batch", help="harmonize every .mid/.midi under a folder")
    b.add_argument("in_dir")
    b.add_argument("out_dir")
    b.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    b.add_argument("--overwrite", action="store_true", help="redo files already in OUT_DIR")
    add_engine_options(b)
    add_knobs(b)
    b.set_defaults(run=cmd_batch)

    e = sub.add_parser("eval", help="likelihood figures on a held-out split")
    e.add_argument("--data", required=True, help="e.g. ../shared/data/jsb/Jsb16thSeparated.npz")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--limit", type=int, default=None, help="only the first N chorales")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_engine_options(e)
    e.set_defaults(run=cmd_eval)

    po = sub.add_parser("ports", help="MIDI APIs compiled in, which one auto picks, and the ports each sees")
    po.set_defaults(run=cmd_ports)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BadInput as error:
        print(f"bachbridge: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bachbridge: interrupted", file=sys.stderr)
        return 130
