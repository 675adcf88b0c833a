"""The musical bar: the model's harmonizations of the JSB test sopranos against Bach's own chorales.

    python bench/bench_music.py [--model coconet] [--limit N] [--json FILE] [--no-model]
    python bench/bench_music.py --live note --model coconet-live    # what the live bridge plays

Harmonizes the soprano of each JSB test chorale (77) with the shipped model (`--model`, a shipped
name or an .onnx path) at the default settings, seed i for chorale i (`--seed S`: S + i); computes the style
statistics of bridge/musicstats.py for Bach's own test chorales, for the model's harmonizations
and for the block-triad baseline (`block_triad_harmonize`, which must fail); prints a table
(statistic | Bach | model | block triads | bar) with each line's verdict and the overall one.
With `--limit N`, only the first N chorales, and Bach's figures are those of the same N.
`--no-model` skips the model (Bach and the baseline only, in a second). `--json FILE` writes
every figure, verdict and tolerance. `--live note|phrase` harmonizes as the live bridge would in
that mode (`bridge.live.render`: the melody played into the bridge's player in simulated time at
100 bpm, the live defaults, what it sounds read back). Exit status 0 whether or not the bar is met (it is a
measurement), 2 on missing data or a bad argument.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.engines import load_engine  # noqa: E402
from bridge.live import LIVE_SETTINGS, LiveConfig, render  # noqa: E402
from bridge.musicstats import (BACH_PARALLELS_QUOTED, CHORD_TYPES, TOLERANCES,  # noqa: E402
                               block_triad_harmonize, compare, meets_bar, music_stats)
from bridge.onnxmodel import default_threads  # noqa: E402
from bridge.cli import add_knobs, settings_from  # noqa: E402
from bridge.settings import Settings  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402

# (key in the stats dict, label, format)
ROWS = (
    ("parallels", "parallel 5ths/8ves per 100 chord changes", "{:.2f}"),
    ("parallels_similar", "  of which similar motion (info)", "{:.2f}"),
    ("voice_crossing", "voice crossing (share of steps)", "{:.3f}"),
    ("chord_mix", "chord-type mix (TV distance to Bach)", "{:.3f}"),
    ("sevenths", "seventh chords (share of steps)", "{:.3f}"),
    ("changes_per_beat", "harmony changes per beat", "{:.2f}"),
    ("bass_stepwise", "bass stepwise motion (share of moves)", "{:.3f}"),
)


def bar_text(name: str, fmt: str, bach: dict) -> str:
    """The bar of one line, in Bach's numbers."""
    t = TOLERANCES
    if name == "parallels":
        return f"<= {t['parallels_max_ratio'] * bach['parallels']:.2f} ({t['parallels_max_ratio']:g}x Bach)"
    if name == "voice_crossing":
        allowed = max(t["voice_crossing_rel"] * bach["voice_crossing"], t["voice_crossing_abs"])
        return f"{bach['voice_crossing']:.3f} +- {allowed:.3f}"
    if name == "chord_mix":
        return f"TV <= {t['chord_mix_tv']:g}"
    rel = t[f"{name}_rel"]
    return f"{fmt.format(bach[name] * (1 - rel))}..{fmt.format(bach[name] * (1 + rel))} (+-{rel:.0%})"


def cell(name: str, fmt: str, stats: dict | None, bach: dict, verdict) -> str:
    if stats is None:
        return "-"
    value = compare(stats, bach)["chord_mix"] if name == "chord_mix" else stats[name]
    text = fmt.format(value)
    if verdict is not None and name in verdict.checks:
        text += "  ok" if verdict.checks[name].passed else "  FAIL"
    return text


def print_table(bach: dict, model: dict | None, block: dict, model_verdict, block_verdict, model_name: str):
    header = ("statistic", "Bach", f"model ({model_name})", "block triads", "bar")
    rows = [header]
    for name, label, fmt in ROWS:
        bach_text = fmt.format(0.0) if name == "chord_mix" else fmt.format(bach[name])
        rows.append((label, bach_text, cell(name, fmt, model, bach, model_verdict),
                     cell(name, fmt, block, bach, block_verdict),
                     bar_text(name, fmt, bach) if name != "parallels_similar" else "(not in the bar)"))
    for kind in CHORD_TYPES:
        rows.append((f"  mix: {kind}", f"{bach['chord_mix'][kind]:.3f}",
                     f"{model['chord_mix'][kind]:.3f}" if model else "-", f"{block['chord_mix'][kind]:.3f}", ""))
    overall = ("overall verdict", "",
               ("MEETS the bar" if model_verdict else "fails the bar") if model is not None else "-",
               "MEETS the bar" if block_verdict else "fails the bar", "")
    widths = [max(len(r[i]) for r in rows + [overall]) for i in range(5)]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for r in rows[1:]:
        print(line(r))
    print("-+-".join("-" * w for w in widths))
    print(line(overall))


def sixteenths_text(stats: dict) -> str:
    return ", ".join(f"{voice} {counted['sixteenths'] / counted['notes']:.3f}"
                     for voice, counted in stats["sixteenths"].items() if counted["notes"])


def bass_by_length_text(stats: dict) -> str:
    by_length = stats["bass_by_length"]
    total = sum(counted["moves"] for counted in by_length.values())
    return ", ".join(f"{length} {counted['moves'] / total:.2f} / {counted['stepwise'] / counted['moves']:.2f}"
                     for length, counted in by_length.items() if counted["moves"])


def verdict_dict(verdict) -> dict | None:
    if verdict is None:
        return None
    return {"passed": verdict.passed,
            "lines": {n: {"passed": c.passed, "distance": c.distance, "rule": c.rule}
                      for n, c in verdict.checks.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="coconet", help="shipped model name or .onnx path (default coconet)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test chorales")
    p.add_argument("--data", default=None, help="path to Jsb16thSeparated.npz")
    p.add_argument("--json", default=None, metavar="FILE", help="write every figure here")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    p.add_argument("--no-model", action="store_true", help="Bach and the block-triad baseline only")
    p.add_argument("--live", choices=["note", "phrase"], help="harmonize as the live bridge would, in this mode")
    p.add_argument("--context", type=int, default=LiveConfig().context_steps, help="with --live: 16ths of past")
    add_knobs(p)   # the same sampling knobs as `bachbridge harmonize` (defaults: the model's own)
    args = p.parse_args()
    if args.limit is not None and args.limit < 1:
        print("--limit must be >= 1", file=sys.stderr)
        return 2

    data = find_jsb16(args.data)
    if data is None or not data.exists():
        print("no JSB data: pass --data path/to/Jsb16thSeparated.npz", file=sys.stderr)
        return 2
    chorales = load_jsb16(data, "test")[:args.limit]
    sopranos = [c[:, 0].copy() for c in chorales]
    engine = None if args.no_model else load_engine(args.model, threads=args.threads or default_threads())
    base = LIVE_SETTINGS if args.live else Settings()
    settings = settings_from(args, engine.default_settings(base) if engine else base)
    first_seed = args.seed or 0   # chorale i is harmonized with seed first_seed + i

    bach = music_stats(chorales)
    block = music_stats([block_triad_harmonize(s) for s in sopranos])

    model = None
    seconds = None
    if engine is not None:
        engine.warm_up()
        rolls = []
        started = time.perf_counter()
        for i, soprano in enumerate(sopranos):
            seed = first_seed + i
            if args.live:
                config = LiveConfig(mode=args.live, context_steps=args.context)
                rolls.append(render(engine, soprano, config, settings.replace(seed=seed)))
            else:
                rolls.append(engine.harmonize(soprano, settings.replace(seed=seed)).pitches)
            print(f"\rharmonized {i + 1}/{len(sopranos)}", end="", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - started
        print(file=sys.stderr)
        model = music_stats(rolls)

    model_verdict = meets_bar(model, bach) if model is not None else None
    block_verdict = meets_bar(block, bach)

    print(f"{len(chorales)} JSB test chorales{' (--limit)' if args.limit else ''}; Bach = Bach's own "
          f"harmonizations of the same chorales; model {args.model if model is not None else '(skipped)'} "
          f"at steps {settings.steps}, temperature {settings.temperature}, pmin {settings.pmin}, "
          f"alpha {settings.alpha}, candidates {settings.candidates}, seed {first_seed} + i "
          f"for chorale i{f', {seconds:.0f} s' if seconds is not None else ''}")
    print(f"parallels: consecutive perfect 5ths/8ves, similar and contrary motion (see bridge/musicstats.py); "
          f"PRODUCT.md quotes {BACH_PARALLELS_QUOTED} for Bach, measured here {bach['parallels']:.2f}")
    print()
    print_table(bach, model, block, model_verdict, block_verdict, Path(str(args.model)).stem)
    print()
    for title, text in (("bass moves by the note they leave (share of the moves / share of those stepwise; "
                         "not in the bar)", bass_by_length_text),
                        ("16th notes, share of each voice's notes (not in the bar)", sixteenths_text)):
        print(f"{title}:")
        for name, stats in (("Bach", bach), ("model", model)):
            if stats is not None:
                print(f"  {name}: {text(stats)}")

    if args.json:
        out = {
            "chorales": len(chorales), "limit": args.limit, "model": str(args.model) if model else None,
            "settings": {"steps": settings.steps, "temperature": settings.temperature, "pmax": settings.pmax,
                         "pmin": settings.pmin, "alpha": settings.alpha, "seeds": f"{first_seed}..{first_seed + len(chorales) - 1}"},
            "harmonize_seconds": seconds,
            "tolerances": TOLERANCES,
            "bach_parallels_quoted": BACH_PARALLELS_QUOTED,
            "stats": {"bach": bach, "model": model, "block_triads": block},
            "distances": {"model": compare(model, bach) if model else None, "block_triads": compare(block, bach)},
            "verdicts": {"model": verdict_dict(model_verdict), "block_triads": verdict_dict(block_verdict)},
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
