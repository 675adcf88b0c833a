"""The live bridge's music without ports or threads: what it would play under a melody."""
from __future__ import annotations

import numpy as np

from bridge.clock import step_ns
from bridge.engines import REST, SOPRANO, Engine
from bridge.live.config import VOICES, LiveConfig, Snapshot
from bridge.live.modes import PLAYERS
from bridge.live.player import NOTE_OFF, NOTE_ON, Outlet
from bridge.live.stats import LiveStats, MonitorEvent
from bridge.score import Score
from bridge.settings import Settings
from bridge.sounding import Sounding


def render(engine: Engine, soprano: np.ndarray, config: LiveConfig, settings: Settings) -> np.ndarray:
    """What the live bridge would play under a melody: the soprano (T,) on the 16th grid (-1 =
    rest) played into a player of `config.mode` on its internal clock, in simulated time, and the
    (T, 4) roll of what it sounds (no ports, no threads, no speculation: speculation changes
    when an answer comes, never what it is). For reading and measuring the live bridge's music."""
    config = config.replace(clock="internal")
    step = int(step_ns(config.bpm))
    player = PLAYERS[config.mode](Outlet(Sounding(lambda data: None)), LiveStats())
    clock = [0]
    player.now_ns = lambda: clock[0]
    player.apply(Snapshot(config, settings, engine), 0)
    soprano = np.asarray(soprano)
    events = []
    for pitch, first, stop in Score.melody(soprano.astype(np.int16)).note_runs(0):
        events.append((first * step, bytes((NOTE_ON, pitch, 80))))
        events.append((stop * step - 1000, bytes((NOTE_OFF, pitch, 0))))  # just before the next
    finish = len(soprano) * step + (player.delay_ns() if config.mode == "phrase" else 0) + step
    for at, data in events + [(finish, b"")]:
        while True:  # the player's own deadlines and schedule up to this event, as the worker ticks
            due = player.next_due_ns()
            if due is None or due > at:
                break
            clock[0] = max(clock[0], due)
            player.tick(clock[0])
        clock[0] = max(clock[0], at)
        if data:
            player.handle(data, at)
        player.tick(clock[0])
    delay = player.delay_ns() if config.mode == "phrase" else 0
    roll = np.full((len(soprano), VOICES), REST, dtype=np.int16)
    roll[:, SOPRANO] = soprano
    sounding = [REST] * VOICES
    last = 0
    for event in list(player.monitor) + [MonitorEvent(finish + delay, -1, 0, 0)]:
        here = min(len(soprano), int(round((event.t_ns - delay) / step)))
        if here > last:
            roll[last:here, 1:] = sounding[1:]
            last = here
        if event.voice > 0:
            if event.velocity:
                sounding[event.voice] = event.pitch
            elif sounding[event.voice] == event.pitch:
                sounding[event.voice] = REST
    return roll
