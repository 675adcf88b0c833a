"""Which of the bridge's threads ask the OS for a long CPU slice (bridge.live.scheduling): those
that run engine work in bursts (the worker, the deciders, the engine loader, the speculator
process), so that a JACK port client woken meanwhile runs at once; never the threads that open
ports (whose JACK process threads inherit what they have)."""
from __future__ import annotations

import os
import threading

import pytest

from bridge.engines import load_engine
from bridge.live import LIVE_SETTINGS, Bridge, LiveConfig
from bridge.live.scheduling import LONG_SLICE_NS, long_slice, slice_ns
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


@pytest.fixture
def plain_jack(jack_rig, tmp_path):
    """An asynchronous JACK server without realtime scheduling (as on many desktops): the worker
    then stays a fair task, and its slice is what keeps the port clients on time."""
    server = JackServer(realtime=False, log=tmp_path / "jackd.log").start()
    try:
        yield server
    finally:
        server.close()


def test_the_bridges_busy_threads_and_speculator_take_a_long_slice_its_port_clients_do_not(plain_jack, tiny_model):
    engine = load_engine(tiny_model, threads=1)
    with Bridge(engine, LiveConfig(clock="free"), LIVE_SETTINGS, api="jack") as bridge:
        speculator = bridge.speculator
        # the process asks for its slice itself, once it has started (imports: seconds)
        assert wait_for(lambda: speculator.pid is not None and slice_ns(speculator.pid) == LONG_SLICE_NS,
                        timeout=30), f"the speculator's slice: {speculator.pid and slice_ns(speculator.pid)}"
        assert not bridge.worker_realtime
        ours = {t.native_id: t.name for t in threading.enumerate()}
        assert BUSY_THREADS <= set(ours.values())
        slices = {tid: slice_ns(tid) for tid in map(int, os.listdir("/proc/self/task"))}
        long = {tid for tid, ns in slices.items() if ns == LONG_SLICE_NS}
        # every other thread of this process keeps the default: the JACK process threads of the
        # bridge's ports (started by libjack, nameless here) among them
        assert {ours.get(tid, "a thread not started by Python") for tid in long} == BUSY_THREADS
        assert len(slices) > len(ours), "the ports' JACK threads are not in this process"
