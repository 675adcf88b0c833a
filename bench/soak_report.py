"""The soak's report: an evening's run (what it left: `Run`, saved beside its records) counted
into figures and verdicts (`report_of`, with bench/soak_record.py), and printed. bench/bench_soak.py
runs the evening; `python bench/bench_soak.py --reaccount WORKDIR` counts one again.
"""
from __future__ import annotations

import collections
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from soak_record import (RATE, MARK_KILL, KILL_CHECK_S, Accounting, Life, account_life, excuse_at_xruns,
                         hanging_at_end, kill_check, mark_of, reconcile, why_lost)

DRIFT_MS, DRIFT_SHARE = 1.0, 0.25
RSS_GROWTH_BAR = 0.05


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


@dataclass
class SoakReport:
    seconds: float
    engines: list[str]
    server: dict
    accounting: Accounting
    notes_in: int
    slices: list[dict]
    rss: dict
    restart: dict
    source_kills: list[dict]
    completed: bool                 # the evening reached its end (else: the bridge's ports did not come back)
    bridge_stats: dict
    samples: list[dict]
    verdict: dict

    @property
    def lost(self) -> int:
        return len(self.accounting.lost)

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("hanging_end", "hanging_unverifiable"):
            out["accounting"][key] = {f"{c + 1}:{p}": n for (c, p), n in getattr(self.accounting, key).items()}
        return out


@dataclass
class Run:
    """What an evening left for its report: enough to count it again (`reaccount`)."""
    seconds: float
    engines: list[str]
    slice_s: float
    server: dict
    lives: list[Life]
    onsets_sent: int
    final: dict                 # the bridge's stats before it was closed ...
    closing: dict               # ... and after
    samples: list[dict]
    restart: dict
    source_kills: list[dict]    # [{"mode", "run_s"}], in order

    def save(self, workdir: Path) -> None:
        """run.json beside the records (record-N.txt, one per life)."""
        state = {key: value for key, value in asdict(self).items() if key != "lives"}
        state["lives"] = [{"start_s": life.start_s, "ended_by_kill": life.ended_by_kill,
                           "marks_sent": life.marks_sent, "index": life.index, "xruns": life.xruns}
                          for life in self.lives]
        (workdir / "run.json").write_text(json.dumps(state, default=str))

    @staticmethod
    def load(workdir: Path) -> "Run":
        state = json.loads((workdir / "run.json").read_text())
        lives = []
        for meta in state.pop("lives"):
            events = []
            for line in open(workdir / f"record-{meta['index'] + 1}.txt"):
                frame, *data = line.split()
                events.append((int(frame), bytes(int(x, 16) for x in data)))
            lives.append(Life(meta["start_s"], events, meta["ended_by_kill"],
                              [tuple(mark) for mark in meta["marks_sent"]], meta["index"], meta.get("xruns", [])))
        return Run(lives=lives, **state)


def reaccount(workdir: Path) -> SoakReport:
    """The report of an evening run before, from its run.json and records."""
    return report_of(Run.load(workdir))


def report_of(run: Run) -> SoakReport:
    server_info = dict(run.server, xruns=jack_xruns(Path(run.server["log"])))
    final, closing = run.final, run.closing
    acc = Accounting()
    bare = [(t_ns / 1e9, pitch) for t_ns, pitch in closing["bare_onsets"]]
    kills = []
    modes = iter(run.source_kills)
    for life in run.lives:
        lost_before = len(acc.lost)
        account_life(life, acc)
        for lost in acc.lost[lost_before:]:
            lost["why"] = why_lost(life, lost, bare)
        for kill_frame in [f for f, m in life.events if mark_of(m) and mark_of(m)[0] == MARK_KILL]:
            seen = [(f, m) for f, m in life.events if f <= kill_frame + round(KILL_CHECK_S * RATE)]
            seen_live = next(modes, {})   # what only the live run saw (the mode, the bridge's own view)
            kills.append({**seen_live, **kill_check(seen)})
    reconcile(acc, run.onsets_sent, final["notes_in"])
    excuse_at_xruns(run.lives, acc)
    last = run.lives[-1] if run.lives else None
    completed = last is not None and not last.ended_by_kill
    if completed:
        acc.hanging_end, acc.hanging_unverifiable = hanging_at_end(last.events)
    slices = []
    bounds = np.arange(0.0, run.seconds + 1e-9, run.slice_s)
    if bounds[-1] < run.seconds:
        bounds = np.append(bounds, run.seconds)
    for lo, hi in zip(bounds, bounds[1:]):
        latencies = [ms for t, ms in acc.latencies if lo <= t < hi]
        echo = [abs(ms) for t, ms in acc.echo_errors if lo <= t < hi]
        harmony = [abs(ms) for t, ms in acc.harmony_errors if lo <= t < hi]
        at_end = [s for s in run.samples if s["run_s"] <= hi + 1]
        slices.append({"from_s": round(float(lo), 1), "to_s": round(float(hi), 1),
                       "note_onsets": len(latencies), "p50_ms": _round(percentile(latencies, 50)),
                       "p99_ms": _round(percentile(latencies, 99)), "max_ms": _round(max(latencies, default=None)),
                       "phrase_onsets": len(echo), "phrase_echo_error_p99_ms": _round(percentile(echo, 99)),
                       "phrase_harmony_error_p99_ms": _round(percentile(harmony, 99)),
                       "bridge_p50_ms": _round(at_end[-1]["p50_ms"]) if at_end else None,
                       "bridge_p99_ms": _round(at_end[-1]["p99_ms"]) if at_end else None})
    rss = rss_figures(run)
    verdict = verdict_of(acc, slices, rss, final, completed, run.restart, kills)
    return SoakReport(run.seconds, run.engines, server_info, acc, final["notes_in"], slices, rss, run.restart,
                      kills, completed, {"before_close": final, "after_close": closing}, run.samples, verdict)


def rss_figures(run: Run) -> dict:
    playing = [s for s in run.samples if s["bridge_rss_kib"] is not None]
    if not playing:
        return {}
    start_at = min(60.0, run.seconds / 4)
    start = next((s for s in playing if s["run_s"] >= start_at), playing[-1])
    end = playing[-1]
    out = {"first": playing[0], "start": start, "end": end}
    for who in ("bridge", "speculator"):
        a, b = start[f"{who}_rss_kib"], end[f"{who}_rss_kib"]
        out[f"{who}_growth"] = None if not a or b is None else round(b / a - 1, 4)
        out[f"{who}_max_kib"] = max((s[f"{who}_rss_kib"] or 0) for s in playing)
    return out


def verdict_of(acc: Accounting, slices: list[dict], rss: dict, final: dict, completed: bool, restart: dict,
               kills: list[dict]) -> dict:
    p99s = [s["p99_ms"] for s in slices if s["p99_ms"] is not None]
    drift = None if len(p99s) < 2 else p99s[-1] - p99s[0]
    kills_ok = len(kills) == 2 and all(not k.get("hanging_after") and k.get("melody_note_held") and "error" not in k
                                       and not k.get("bridge_view", {}).get("still_sounding") for k in kills)
    verdict = {
        "no_answer_lost": not acc.lost,
        "no_answer_lost_on_the_way_out": not [lost for lost in acc.lost if not lost["why"].startswith("bare")],
        "evening_completed": completed,
        "no_hanging_note_at_the_end": completed and not acc.hanging_end,
        "released_after_the_source_died": kills_ok,
        "ports_reopened_by_the_bridge": bool(restart.get("ports_back_s") is not None and final["ports_reopened"] >= 1),
        "no_event_errors": final["event_errors"] == 0,
        # + 0.01: the p99s are whole JACK periods rounded to 0.01 ms, so a step that meets the
        # bound exactly may round above it (6.67 - 5.33 = 1.34 against a quarter of 5.33)
        "no_p99_drift": drift is None or drift <= max(DRIFT_MS, DRIFT_SHARE * p99s[0]) + 0.01,
        "rss_growth_within_5_percent": all(rss.get(f"{who}_growth") is None or rss[f"{who}_growth"] <= RSS_GROWTH_BAR
                                           for who in ("bridge", "speculator")),
    }
    verdict["all"] = all(verdict.values())
    return verdict


def jack_xruns(log: Path) -> dict:
    """What jackd's log says of missed cycles: xruns in all, and per client the cycles it was late
    for ('client = NAME was not finished'): a client late for a cycle loses that cycle's input."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    late = collections.Counter(re.findall(r"client = (\S+) was not finished", text))
    return {"total": text.count("XRun"), "late_clients": dict(late.most_common())}


def _round(x, digits=2):
    return None if x is None else round(float(x), digits)


def print_report(report: SoakReport) -> None:
    acc = report.accounting
    print(f"\n{report.seconds / 60:g} minutes, engines {', '.join(report.engines)}; JACK realtime "
          f"{'granted' if report.server['realtime_granted'] else 'NOT granted (figures measure the machine)'}")
    xruns = report.server.get("xruns", {})
    print(f"JACK: {xruns.get('total', '?')} xruns; cycles missed by client: {xruns.get('late_clients', {})}")
    print(f"the DAW sent {acc.sent} onsets, the bridge took in {report.notes_in} (notes_in), the record has "
          f"{acc.onsets} (note {acc.by_mode['note']}, phrase {acc.by_mode['phrase']}, during a change "
          f"{acc.by_mode['changing']}); the listener missed cycles in {acc.blind_spots} places")
    print(f"answered {acc.answered} ({acc.held_over} by harmony held over), LOST {len(acc.lost)}, "
          f"excused {sum(acc.excused.values())} {acc.excused}")
    print(f"onsets the bridge itself played with no harmony struck near them (its monitor): "
          f"{len(report.bridge_stats['after_close']['bare_onsets'])}")
    for lost in acc.lost[:10]:
        print(f"  lost: {lost}")
    print(f"hanging at the end: {sum(acc.hanging_end.values())} {acc.hanging_end or ''}"
          + (f" (and unverifiable, the listener having missed cycles since: {acc.hanging_unverifiable})"
             if acc.hanging_unverifiable else ""))
    print("                  note mode: latency, ms               phrase mode: |error| p99, ms   the bridge's own")
    print("slice, s          onsets   p50     p99     max      onsets  echo    harmony       p50/p99 ms")
    for s in report.slices:
        print(f"{s['from_s']:6.0f}-{s['to_s']:<6.0f}    {s['note_onsets']:6d}  {_fmt(s['p50_ms'])}  {_fmt(s['p99_ms'])}"
              f"  {_fmt(s['max_ms'])}   {s['phrase_onsets']:6d}  {_fmt(s['phrase_echo_error_p99_ms'])}"
              f"  {_fmt(s['phrase_harmony_error_p99_ms'])}    {_fmt(s['bridge_p50_ms'])}/{_fmt(s['bridge_p99_ms'])}")
    rss = report.rss
    if rss:
        for who in ("bridge", "speculator"):
            growth = rss[f"{who}_growth"]
            print(f"{who} RSS: first {_mib(rss['first'][who + '_rss_kib'])}, start ({rss['start']['run_s']:.0f} s) "
                  f"{_mib(rss['start'][who + '_rss_kib'])}, end ({rss['end']['run_s']:.0f} s) "
                  f"{_mib(rss['end'][who + '_rss_kib'])}, max {_mib(rss[who + '_max_kib'])}, growth "
                  + ("-" if growth is None else f"{growth * 100:+.2f}%"))
    print(f"JACK restart: {report.restart}" + ("" if report.completed else
          "\nthe evening ENDED at the server restart: the bridge's ports did not come back"))
    for kill in report.source_kills:
        print(f"DAW killed mid-note: {kill}")
    final = report.bridge_stats["before_close"]
    print(f"bridge: event_errors {final['event_errors']}, engine_errors {final['engine_errors']}, ignored "
          f"{final['ignored']}, speculation hits {final['speculation_hits']}/{final['speculation_lookups']}, "
          f"ports_reopened {final['ports_reopened']}, port_problem {final['port_problem']}")
    print("verdict: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report.verdict.items()))


def _fmt(x) -> str:
    return "   -  " if x is None else f"{x:6.2f}"


def _mib(kib) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"
