"""Which of the bridge's threads ask the OS for which CPU slice (bridge.scheduling): a long one
for those that run engine work in bursts (the worker, the deciders, the engine loader, the
speculator process), the shortest for the JACK client threads of its ports, so that a port
client woken meanwhile runs at once; the default for the rest (the threads that open ports)."""
from __future__ import annotations

import os
import threading

import pytest

from bridge.engines import load_engine
from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig
from bridge.scheduling import LONG_SLICE_NS, SHORT_SLICE_NS, long_slice, short_slice_for_new_threads, slice_ns
from jackrig import JackServer
from test_ports import wait_for

BUSY_THREADS = {"bachbridge-live", "bachbridge-phrases", "bachbridge-answers", "bachbridge-engines"}


def _kernel_takes_slices() -> bool:
    granted = []
    probe = threading.Thread(target=lambda: granted.append(long_slice()))
    probe.start()
    probe.join()
    return granted[0]


pytestmark = pytest.mark.skipif(not _kernel_takes_slices(),
                                reason="this kernel takes no custom slice for fair tasks (Linux 6.12 and later do)")


def test_a_long_slice_is_for_the_thread_that_asks_and_the_threads_it_starts():
    seen = {}

    def busy():
        seen["granted"] = long_slice()
        seen["itself"] = slice_ns()
        child = threading.Thread(target=lambda: seen.update(child=slice_ns()))
        child.start()
        child.join()

    thread = threading.Thread(target=busy)
    thread.start()
    thread.join()
    assert seen == {"granted": True, "itself": LONG_SLICE_NS, "child": LONG_SLICE_NS}
    assert slice_ns() != LONG_SLICE_NS


def test_threads_started_inside_short_slice_for_new_threads_take_the_short_slice_and_the_starter_goes_back():
    seen = {}
    before = slice_ns()
    with short_slice_for_new_threads():
        child = threading.Thread(target=lambda: seen.update(child=slice_ns()))
        child.start()
        child.join()
    later = threading.Thread(target=lambda: seen.update(later=slice_ns()))
    later.start()
    later.join()
    assert seen == {"child": SHORT_SLICE_NS, "later": before}
    assert slice_ns() == before != SHORT_SLICE_NS


def _tasks() -> set[int]:
    return set(map(int, os.listdir("/proc/self/task")))


@pytest.fixture
def plain_jack(jack_rig, tmp_path):
    """An asynchronous JACK server without realtime scheduling (as on many desktops): the worker
    then stays a fair task, and its slice is what keeps the port clients on time."""
    server = JackServer(realtime=False, log=tmp_path / "jackd.log").start()
    try:
        yield server
    finally:
        server.close()


def test_the_bridges_busy_threads_and_speculator_take_a_long_slice_its_port_clients_the_short_one(plain_jack, tiny_model):
    engine = load_engine(tiny_model, threads=1)
    before = _tasks()
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        speculator = bridge.speculator
        # the process asks for its slice itself, once it has started (imports: seconds)
        assert wait_for(lambda: speculator.pid is not None and slice_ns(speculator.pid) == LONG_SLICE_NS,
                        timeout=30), f"the speculator's slice: {speculator.pid and slice_ns(speculator.pid)}"
        assert not bridge.worker_realtime
        ours = {t.native_id: t.name for t in threading.enumerate()}
        assert BUSY_THREADS <= set(ours.values())

        def long_ones() -> set[str]:
            return {ours.get(tid, "a thread not started by Python") for tid in _tasks() if slice_ns(tid) == LONG_SLICE_NS}

        # each busy thread asks first thing once it runs: it may not have run yet
        wait_for(lambda: long_ones() == BUSY_THREADS, timeout=10)
        assert long_ones() == BUSY_THREADS
        slices = {tid: slice_ns(tid) for tid in _tasks()}
        # the threads libjack started for the bridge's two ports (nameless here: not Python's)
        jack_threads = {tid for tid in _tasks() - before if tid not in ours}
        assert len(jack_threads) >= 2, "the ports' JACK threads are not in this process"
        assert {tid: slices[tid] for tid in jack_threads} == dict.fromkeys(jack_threads, SHORT_SLICE_NS)
        # the rest keep the default: the main thread that opened the ports, the watcher
        default = slice_ns(threading.main_thread().native_id)
        assert default not in (LONG_SLICE_NS, SHORT_SLICE_NS)
        assert {ours.get(tid) for tid, ns in slices.items() if ns == default} >= {"MainThread", "bachbridge-ports"}
