"""How the bridge's threads and processes ask the OS for CPU time, so that none of them holds
up the port clients (the realtime contract, bridge.live), how the bridge keeps the CPUs
awake while it plays (`keep_cpus_awake`), and what the whole Python process does differently
while any bridge in it plays (`tune_for_live`: the GIL switch interval, the heap frozen).

On Linux 6.6 and later the fair scheduler is EEVDF: among runnable tasks it runs the one with
the earliest virtual deadline, a task's "slice" (1.4 ms by default on the reference machine)
after it was last picked, and it lets the running task finish its slice unless a task that
wakes asks for a shorter one (6.12 and later). A JACK client's process thread wakes once a cycle
(1.33 ms at 64 frames, 48 kHz) for a few microseconds; when it lands on a core where other work
runs under the default slice, it may wait out that slice and miss its cycle, and an asynchronous
JACK server without realtime scheduling then drops the events that cycle was to deliver (an
xrun). So, on both sides:
- `long_slice()`: 100 ms for the threads that work in bursts (engine calls): any woken
  default-slice task (a JACK client of another program, the server's own threads) preempts them
  at once, which costs the burst only those few microseconds;
- `short_slice_for_new_threads()`: 0.1 ms for the threads libjack starts for our own clients,
  so that they preempt any default-slice work (ours or another program's) as soon as they wake.
Xruns the server reported a second in the stock reproduction of bench/bench_live.py
(jack_midiseq -> `bachbridge live` -> jack_midi_dump; `--notes 0 --stock-seconds 30`), default
slices against long ones for the bursts: 13 against 7 without speculation, 17 against 8 with it
(29 with the speculator at nice 0 and the default slice); with the short slice for our JACK
clients too, 4 without speculation and 2 to 4 with it (a trivial echo client in the bridge's
place: 1 to 2).
Where the kernel has no such slices (older kernels, other systems), it does nothing.
"""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import struct
import sys
import threading
from contextlib import contextmanager

# the kernel clamps a slice to 0.1 .. 100 ms
LONG_SLICE_NS = 100_000_000
SHORT_SLICE_NS = 100_000

# struct sched_attr, its first published size (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice,
# priority, runtime, deadline, period, util_min, util_max
_SCHED_ATTR = struct.Struct("IIQiIQQQII")
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}   # (sched_setattr, sched_getattr)


def _syscall():
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or not hasattr(os, "sched_getscheduler"):
        return None, None
    try:
        return ctypes.CDLL(None, use_errno=True).syscall, numbers
    except (OSError, AttributeError):
        return None, None


_CALL, _NUMBERS = _syscall()


def _get_attr(tid: int) -> list | None:
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.size)
    if _CALL(_NUMBERS[1], ctypes.c_int(tid), buffer, ctypes.c_uint(_SCHED_ATTR.size), ctypes.c_uint(0)) != 0:
        return None
    return list(_SCHED_ATTR.unpack(buffer.raw))


def slice_ns(tid: int = 0) -> int | None:
    """A thread's slice in ns (0: this one), None where unknown (0 for a realtime one)."""
    if _CALL is None:
        return None
    attr = _get_attr(tid)
    return None if attr is None else attr[5]


def _set_slice(tid: int, ns: int) -> bool:
    """Ask for a slice of `ns` (0: the kernel's default), keeping policy and nice; True if granted."""
    if _CALL is None:
        return False
    attr = _get_attr(tid)
    if attr is None or attr[1] not in (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE):
        return False
    attr[0], attr[2], attr[5] = _SCHED_ATTR.size, 0, ns
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.pack(*attr), _SCHED_ATTR.size)
    if _CALL(_NUMBERS[0], ctypes.c_int(tid), buffer, ctypes.c_uint(0)) != 0:
        return False
    return ns == 0 or slice_ns(tid) == ns


def long_slice(tid: int = 0) -> bool:
    """Ask for LONG_SLICE_NS for a thread (0: this one; a process's threads created later inherit
    it), keeping its policy and nice value. For threads that run long bursts of work (engine
    calls), never for one that must answer promptly when it wakes (a port client's). True if
    granted."""
    return _set_slice(tid, LONG_SLICE_NS)


@contextmanager
def short_slice_for_new_threads():
    """The threads this one starts inside the block (a JACK client's process thread) get
    SHORT_SLICE_NS: woken once a cycle for microseconds, they then preempt any default-slice work
    on their core at once instead of waiting up to its slice. The calling thread goes back to the
    default after."""
    granted = _set_slice(0, SHORT_SLICE_NS)
    try:
        yield
    finally:
        if granted:
            _set_slice(0, 0)


def realtime(tid: int, priority: int) -> bool:
    """SCHED_FIFO at `priority` for a thread; False where the OS refuses (no rtprio limit, e.g.
    not in the audio group) or has no such policy."""
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def lowest_priority(pid: int = 0) -> None:
    """Nice 19 for a process (0: this one): the least share of the CPU when other work wants it.
    Not SCHED_IDLE: with it the speculator made the stock reproduction's server report more
    xruns than at nice 19 (11 to 14 a second against 7 to 10, both with a long slice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 19)
    except (OSError, AttributeError):
        pass


# the kernel's CPU latency QoS: while a file descriptor on it holds a value written, no CPU enters
# an idle state that takes longer than that many microseconds to leave
CPU_DMA_LATENCY = "/dev/cpu_dma_latency"


def cpus_idle_warning(granted: bool) -> str | None:
    """The one line the command and the window show where a bridge asked to keep the CPUs awake
    and Linux refused (elsewhere there is no such request to make); None when granted."""
    if granted or not sys.platform.startswith("linux"):
        return None
    return (f"the CPUs may idle deep between notes (answers later after a silence): no write access to "
            f"{CPU_DMA_LATENCY} (see the README)")


def keep_cpus_awake() -> int | None:
    """Ask the kernel to keep every CPU out of its deep idle states (a CPU latency QoS request of
    0 us, as Ardour makes one) until the returned file descriptor is closed or the process ends;
    None where refused: the device is root's unless a udev rule gives it to the audio group, and
    there is none off Linux.

    Between two notes the cores idle for hundreds of milliseconds; a core woken from a deep state
    (a VM's halt, a laptop's C6) takes long to leave it, and runs the next note's network calls
    from cold caches. On the reference 2-core VM (`python bench/bench_live.py --load 0
    --stock-seconds 0`, and again with `--let-cpus-sleep`): a miss inside the bridge p99 5.15 ms
    against 6.99, and the JACK server's xruns in a 250-note run 6 to 79 against 610 to 934. The
    cost: idle cores poll instead of sleeping, which draws power."""
    try:
        fd = os.open(CPU_DMA_LATENCY, os.O_WRONLY)
    except OSError:
        return None
    try:
        os.write(fd, struct.pack("i", 0))
    except OSError:
        os.close(fd)
        return None
    return fd


def cpu_latency_limit_us() -> int | None:
    """The kernel's CPU latency limit now, in microseconds (every request's least), None where
    it cannot be read."""
    try:
        fd = os.open(CPU_DMA_LATENCY, os.O_RDONLY)
    except OSError:
        return None
    try:
        return struct.unpack("i", os.read(fd, 4))[0]
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the process while bridges play

_tuning_lock = threading.Lock()
_tuned = 0                                  # tune_for_live() calls not yet given back
_saved_switch_interval: float | None = None  # the interval before the first of them


def tune_for_live(switch_interval_s: float) -> None:
    """Set the process up for live playing until the matching `untune_for_live()`; calls nest
    (two bridges in one process: the first sets, the last gives back).

    - The GIL switch interval: a thread waiting for the GIL (the worker, when another thread
      holds it) waits up to this long; Python's default is 5 ms.
    - The heap frozen: a full garbage collection runs in whichever thread allocates when one
      falls due, the worker too, and walks every object tracked (35 to 40 ms with two engines
      loaded). What exists now lives as long as the bridge: collected once here, then set aside
      (gc.freeze); `freeze_new_objects()` sets aside what a bridge adds later (a new engine)."""
    global _tuned, _saved_switch_interval
    with _tuning_lock:
        if _tuned == 0:
            _saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(switch_interval_s)
        gc.collect()
        gc.freeze()
        _tuned += 1


def freeze_new_objects() -> None:
    """While the process is tuned for live playing, set aside what was made since (no collection:
    that would hold the GIL as long as it walks); otherwise nothing."""
    with _tuning_lock:
        if _tuned:
            gc.freeze()


def untune_for_live() -> None:
    """Give back one `tune_for_live()`; the last one restores the switch interval and unfreezes."""
    global _tuned, _saved_switch_interval
    with _tuning_lock:
        if _tuned == 0:
            return
        _tuned -= 1
        if _tuned == 0:
            sys.setswitchinterval(_saved_switch_interval)
            _saved_switch_interval = None
            gc.unfreeze()
