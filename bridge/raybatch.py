"""`bachbridge batch IN OUT --ray [ADDRESS]`: the batch conversion on a Ray cluster.

The same conversion as `batch_convert` (the same files skipped, the same per-file seeds, so the
same bytes as `--jobs 1`; the same summary), its files harmonized by Ray workers: one actor per
CPU, each holding one loaded engine whose onnxruntime threads are the CPUs Ray gives that actor.
This process reads every input and writes every output (atomically): the workers get a file's
bytes and send the harmonized file's bytes back, so the nodes of a cluster need no shared file
system, only bachbridge and its models installed.

Ray is an optional extra (`pip install bachbridge[scale]`); it is imported only here, when asked for.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import tempfile
import threading
from pathlib import Path
from typing import Callable

from bridge.convert import BatchRun, BatchSummary, atomic_write, failure_of, harmonize_file
from bridge.engines import load_engine
from bridge.errors import BadInput
from bridge.onnxmodel import default_threads
from bridge.settings import Settings

# `--ray` with no address: a Ray instance of this process's own (Ray's own name for it too)
LOCAL = "local"


def require_ray():
    """The `ray` module, or BadInput saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BadInput("--ray needs Ray, which is not installed: pip install bachbridge[scale]") from None
    return ray


class HarmonizeWorker:
    """A Ray actor: one engine, loaded once, harmonizing the files it is sent, as bytes."""

    def __init__(self, model: str):
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        self.engine = None
        # kept, not raised: the driver asks `load_failure` and stops with this one line
        self.load_failure = failure_of(Path(model), lambda: self._load(model, max(1, int(cpus))))

    def _load(self, model: str, threads: int) -> None:
        # no spinning: the other workers on this node share its cores
        self.engine = load_engine(model, threads=threads, spin=False)

    def ready(self) -> str | None:
        """None once the engine is loaded, else why it could not be."""
        return self.load_failure

    def convert(self, source: Path, data: bytes, settings: Settings,
                track: int | None) -> tuple[str | None, bytes | None]:
        """`data`, the contents of `source`, harmonized -> (None, the output file's bytes), or
        (the one-line reason naming `source`, None)."""
        with tempfile.TemporaryDirectory(prefix="bachbridge-") as folder:
            given, made = Path(folder) / f"in{source.suffix}", Path(folder) / f"out{source.suffix}"
            given.write_bytes(data)

            def harmonize() -> None:
                try:
                    harmonize_file(given, made, self.engine, settings, track)
                except BadInput as error:  # name the user's file, not this worker's copy of it
                    if error.path is not None and Path(error.path) == given:
                        raise BadInput(error.reason, source) from None
                    raise

            failure = failure_of(source, harmonize)
            return failure, None if failure else made.read_bytes()


@contextlib.contextmanager
def ray_connection(ray, address: str, cpus: int):
    """Ray, connected for the duration: a new local instance of `cpus` CPUs (`address` LOCAL) or
    the cluster at `address`, shut down after. A connection this process already has (a test's,
    a notebook's) is used as it is and left open."""
    if ray.is_initialized():
        yield
        return
    if address != LOCAL:
        check_answers(address)
    # Ray's INFO lines would land between the progress bar and the summary
    quiet = dict(logging_level=logging.WARNING)
    try:
        if address == LOCAL:
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"--ray {address}: cannot start or reach Ray: {first_line}") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_answers(address: str) -> None:
    """BadInput unless something accepts a connection at a HOST:PORT address (Ray itself retries
    an address where nothing listens for minutes); other forms (`auto`, `ray://...`) are Ray's to judge."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not host or "/" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise BadInput(f"--ray {address}: no Ray cluster answers there ({error.strerror or error}); "
                       "start one with `ray start --head`") from None


def start_workers(ray, model: str, count: int) -> list:
    """`count` HarmonizeWorker actors of one CPU each, every one with its engine loaded; a model
    that does not load ends it here, once (BadInput), as it does for `--jobs`."""
    worker_class = ray.remote(num_cpus=1)(HarmonizeWorker)
    workers = [worker_class.remote(model) for _ in range(count)]
    try:
        failures = ray.get([worker.ready.remote() for worker in workers])
    except ray.exceptions.RayActorError as error:   # the actor itself did not start on its node
        failures = [f"a Ray worker did not start ({type(error).__name__}): is bachbridge, with its "
                    "models, installed on every node of the cluster?"]
    for failure in failures:
        if failure is not None:
            for worker in workers:
                ray.kill(worker)
            raise BadInput(failure)
    return workers


def ray_batch_convert(in_dir: Path, out_dir: Path, model: str, settings: Settings, address: str = LOCAL,
                      jobs: int | None = None, overwrite: bool = False, track: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      cancel: threading.Event | None = None) -> BatchSummary:
    """`batch_convert` on Ray: harmonize every MIDI file under `in_dir` into the same relative path
    under `out_dir`, results identical to `batch_convert`'s for the same settings.

    `address` LOCAL: a Ray instance of `jobs` CPUs (default: every core this process may use),
    started here and shut down after; else a running cluster's address (`ray start --head`
    prints it; `auto`: the one started on this machine), given `jobs` workers at most (default:
    one per CPU in the cluster). Never more workers than files. `cancel` as for `batch_convert`:
    no file is sent after it is set; those already sent finish and are recorded."""
    ray = require_ray()
    from models import SHIPPED_MODELS

    run = BatchRun(in_dir, out_dir, settings, overwrite, progress)
    if str(model) not in SHIPPED_MODELS:
        model = str(Path(model).resolve())  # the workers do not run in this folder
    load_engine(model, threads=1, spin=False)  # a bad model fails here, once, before Ray starts
    cancelled = cancel.is_set if cancel is not None else lambda: False
    with ray_connection(ray, address, jobs or default_threads()):
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = start_workers(ray, str(model), max(1, min(cpus, jobs or cpus, len(run.work) or 1)))
        run.make_folders()
        waiting = iter(run.work)
        idle = list(workers)
        running = {}   # result reference -> (source, target, the worker converting it)
        while True:
            while idle and not cancelled() and (item := next(waiting, None)):
                source, target, file_settings = item
                try:
                    data = source.read_bytes()
                except OSError as error:
                    run.record(source, str(BadInput(f"cannot read: {error.strerror or error}", source)))
                    continue
                worker = idle.pop()
                running[worker.convert.remote(source, data, file_settings, track)] = source, target, worker
            if not running:
                break
            [finished], _ = ray.wait(list(running), num_returns=1)
            source, target, worker = running.pop(finished)
            try:
                failure, output = ray.get(finished)
                idle.append(worker)
            except ray.exceptions.RayActorError as error:   # the worker process died (out of memory, a crash)
                failure, output = f"{source}: the Ray worker converting it stopped ({type(error).__name__})", None
            if failure is None:
                atomic_write(target, lambda temp: temp.write_bytes(output))
            run.record(source, failure)
            if not idle and not running:   # every worker has stopped: nothing is left to send the rest to
                for rest, _, _ in waiting:
                    run.record(rest, f"{rest}: not converted: every Ray worker stopped")
    return run.finish()
