"""The live bridge: a melody in, alto, tenor and bass out, while the music plays.

Data flows one way: port -> events -> grid -> engine -> grid -> events -> port.

    from bridge.live import Bridge, LiveConfig, LIVE_SETTINGS
    with Bridge(engine, LiveConfig(mode="note"), LIVE_SETTINGS, api="jack") as bridge:
        bridge.update(settings=...)     # any thread, any time
        bridge.stats.snapshot()         # latencies, counters; bridge.monitor: the notes as they sound

The realtime contract. Who runs what, and what each may never do:

1. The port threads (rtmidi's; on JACK, JACK's process thread of each of our clients) move
   bytes and nothing else. On JACK no Python runs there at all (rtmidi's own queue, drained by
   polling); elsewhere a callback only stamps and appends to a deque. Nothing of ours may hold
   them up: they take no lock of ours; they ask the OS for the shortest CPU slice, and every
   thread or process of ours that works in bursts (the worker, the deciders, the engine loaders,
   the speculator) for a long one (bridge.scheduling), so that a port client woken during a
   burst runs at once instead of waiting out the burst's slice: on a JACK server running
   asynchronously without realtime scheduling, a client that misses its cycle drops the events
   it was to deliver. The threads that open ports keep the default.
2. The worker ("bachbridge-live") is the output's one writer. It alone polls the input, runs
   the player of the current mode, asks the engine on a miss, and writes to the output port and
   to its one record of what sounds (bridge.sounding). It never waits on another thread: the
   knobs come as one immutable `Snapshot` in one attribute (replaced whole by `update()`, or by
   the worker itself for a knob a bound controller moved, only when no `update()` holds the
   lock: else on a later pass), and everything else another thread wants done on the ports
   (panic, a file to play, new ports after a reconnect) is a request in a deque that the worker
   runs between two messages.
   Idle, it sleeps IDLE_SLEEP_S (0.5 ms) between polls: never a busy spin. Under a JACK server
   that runs realtime, the worker asks for realtime scheduling too, at the lowest priority
   (below JACK's threads, above a loaded machine's other work); never under one that does not,
   whose port clients it would starve while the engine works.
3. Speculation runs in a separate process at nice 19 (bridge.live.speculation): it leaves the
   CPU to any other work that wants it, shares no GIL with the worker, reaches the worker through
   pipes it never blocks on, and starts its work on an onset only a few JACK cycles after the
   answer went out. It changes how soon an answer comes, never whether or which.
4. Everything slow happens elsewhere: warming up a new engine (in `update()`'s caller; a model a
   bound controller picks, in the "bachbridge-engines" thread), looking at
   the ports and the JACK server, opening ports again, closing dead ones (the watcher thread,
   "bachbridge-ports"), a phrase's harmony and a respond mode answer (the deciders' threads,
   "bachbridge-phrases" and "bachbridge-answers"), offline work and drawing (the window's threads).
While a bridge runs (any bridge, where a process runs two: bridge.scheduling.tune_for_live),
the GIL switch interval is 0.2 ms, so the worker waits at most that long for a thread that
holds the GIL and is running; and what the process held when it started (and each engine
warmed up since) is frozen out of the garbage collector's walks (gc.freeze), so a full
collection, which runs in whichever thread allocates when one falls due, the worker too, walks
only what was made since. Where the OS lets it, the CPUs are kept out of their deep idle
states (a CPU latency request of 0 us, bridge.scheduling.keep_cpus_awake), so that a note after
a silence does not wait for a core to wake and warm up.

Never a hanging note: every note-on a player sends is ended on the melody's note-off, on
Stop/Start, on a release-worthy change (engine, mode, channels), on panic, when the melody's
source goes away, when the ports are replaced, and on close (note-offs, then CC 123).
Nothing from outside stops it: SysEx, unknown or malformed messages and clock floods are counted
and ignored; an engine error makes that note (or phrase) pass-through (echo only), counted, last
text kept; any other error while handling one event is counted and the loop goes on.

Modules: `config` (LiveConfig, Snapshot), `context` (the grid of the recent past, asking the
engine), `player`, `note_mode`, `phrase_mode`, `respond_mode` (the players), `decider` (a
phrase's harmony and a respond mode answer, worked out beside the worker), `speculation`,
`playback` (a file played out of the bridge), `learn` (knobs bound to controllers), `stats`,
`render` (the players in simulated time, for measuring the music), `bridge` (Bridge: worker and
watcher).
"""
from bridge.live.bridge import IDLE_SLEEP_S, Bridge
from bridge.live.config import LIVE_SETTINGS, MODES, LiveConfig, Snapshot
from bridge.live.context import Context, ask_engine, past_steps_for, warm_up
from bridge.live.note_mode import NoteMode
from bridge.live.phrase_mode import PhraseMode
from bridge.live.player import Outlet, Player
from bridge.live.render import render
from bridge.live.stats import LiveStats, MonitorEvent, StatsSnapshot

__all__ = ["IDLE_SLEEP_S", "LIVE_SETTINGS", "MODES", "Bridge", "Context", "LiveConfig", "LiveStats",
           "MonitorEvent", "NoteMode", "Outlet", "PhraseMode", "Player", "Snapshot", "StatsSnapshot",
           "ask_engine", "past_steps_for", "render", "warm_up"]
