"""Where samples run: in this process, in N local processes, or on the actors of a Ray cluster.

Every worker holds its own agent (policy and tracker), built once from an
:class:`AgentSpec` (or a picklable zero-argument factory), and turns a :class:`Job` into a
:class:`JobResult`: the run's status, its trajectory and its masks as RLE. Workers write
nothing the evaluation keeps; the driver alone writes predictions and completion records,
in the order results arrive, so one writer owns the output folder whatever the executor,
and results are the same as a single-process run (each sample's run depends only on the
sample).

- ``inline``: one agent in this process (``workers=1``).
- ``processes``: a ``spawn`` process pool (clean CUDA state, no forked locks); each worker
  builds its agent in the pool initializer, ignores Ctrl-C (the driver handles it) and
  exits when the driver dies, even by SIGKILL, so no orphan keeps writing.
- ``ray``: ``workers`` actors on a Ray cluster (``ray.init(address)``; ``"local"`` starts
  one here), each holding an agent; frames are read from the same paths on every node
  (a shared filesystem), results travel back to the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from revseg.errors import RevsegError, SpecError
from revseg.settings import ChainSettings, SamplingParams

if TYPE_CHECKING:
    from revseg.agents import ReVSegAgent
    from revseg.trajectory import Trajectory

logger = logging.getLogger(__name__)

ERROR_STATUS = "error"


_WHERE_NOT_WHAT = frozenset({"base_url", "device"})
"""Options that say where a model runs, not what it answers: a resumed evaluation may change them."""


@dataclass(frozen=True)
class AgentSpec:
    """How a worker builds its agent: backend spec strings and options, chain settings, sampling.

    Picklable, so it can travel to worker processes and Ray actors; :meth:`describe` is what
    ``run.json`` records to check that a resumed evaluation uses the same configuration.
    """

    policy: str
    tracker: str
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    tracker_options: Mapping[str, Any] = field(default_factory=dict)
    settings: ChainSettings = field(default_factory=ChainSettings)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    frame_backend: str = "auto"

    def __post_init__(self) -> None:
        if self.tracker.strip().lower() == "none":
            raise SpecError("evaluation needs masks: pass a tracker spec, not 'none'")

    def build(self) -> ReVSegAgent:
        """The agent, with no per-run overlay video, HTML report or progress bar (thousands of runs)."""
        return quiet_agent(
            self.policy,
            self.tracker,
            settings=self.settings,
            sampling=self.sampling,
            frame_backend=self.frame_backend,
            policy_options=dict(self.policy_options),
            tracker_options=dict(self.tracker_options),
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of everything that changes the predictions."""

        def relevant(options: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in options.items() if v is not None and k not in _WHERE_NOT_WHAT}

        return {
            "policy": self.policy,
            "tracker": self.tracker,
            "policy_options": relevant(self.policy_options),
            "tracker_options": relevant(self.tracker_options),
            "settings": self.settings.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
        }


def quiet_agent(policy: Any, tracker: Any, **options: Any) -> ReVSegAgent:
    """A ReVSegAgent that writes only what evaluation keeps: no overlay, no HTML report, no progress."""
    from revseg.agents import ReVSegAgent

    return ReVSegAgent(policy, tracker, overlay=False, report=False, progress=False, **options)


AgentFactory = AgentSpec | Callable[[], "ReVSegAgent"]
"""An AgentSpec, or any zero-argument callable returning an agent (picklable for processes and Ray)."""


def build_agent(factory: AgentFactory) -> ReVSegAgent:
    """Build the agent an AgentSpec or factory describes."""
    return factory.build() if isinstance(factory, AgentSpec) else factory()


def describe_agent(factory: AgentFactory) -> dict[str, Any]:
    """What ``run.json`` records of the agent configuration."""
    if isinstance(factory, AgentSpec):
        return factory.describe()
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    return {"factory": f"{getattr(factory, '__module__', '?')}.{name}"}


@dataclass(frozen=True)
class Job:
    """One sample to run: the frames folder (or the listed frames in it), the query, the id to record."""

    key: str
    frames_dir: str
    frame_files: tuple[str, ...] | None
    query: str


@dataclass
class JobResult:
    """What a worker sends back: status, reason, the trajectory as JSON, the masks record and frame names.

    ``verified_masks`` holds the other masks files the record points to (look_again: each
    verify turn's and attempt's, when it is not the final one), by their path in the
    worker's scratch folder, so the store can keep them beside the record.
    """

    key: str
    status: str
    reason: str | None
    seconds: float
    trajectory: str | None = None
    masks: dict[str, Any] | None = None
    verified_masks: dict[str, dict[str, Any]] = field(default_factory=dict)
    frame_names: list[str] = field(default_factory=list)
    worker: str = ""
    node: str = ""  # the Ray node id, under Ray


def run_job(agent: ReVSegAgent, job: Job) -> JobResult:
    """Run the agent on one job in a scratch folder; every exception becomes an ``error`` result.

    When the job lists frames (a benchmark that segments only some of a folder's frames),
    the agent reads a folder of links to exactly those frames.
    """
    return run_sync(arun_job(agent, job))


async def arun_job(agent: ReVSegAgent, job: Job) -> JobResult:
    """:func:`run_job` without blocking the event loop (``agent.arun``), so many jobs can share one agent."""
    start = perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="revseg-eval-"))
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        video, names = _frames_for(job, scratch)
        result = await agent.arun(video, job.query, scratch / "run", query_id=job.key)
        masks = None
        trajectory = result.trajectory
        if result.has_masks:
            masks = json.loads(Path(trajectory.outputs["masks_json"]).read_text())
        verified = _verified_masks(trajectory, trajectory.outputs.get("masks_json") if masks is not None else None)
        return JobResult(
            key=job.key,
            status=result.status.value,
            reason=trajectory.reason,
            seconds=perf_counter() - start,
            trajectory=trajectory.model_dump_json(),
            masks=masks,
            verified_masks=verified,
            frame_names=names,
            worker=worker,
        )
    except Exception as exc:  # noqa: BLE001 - one broken sample must not end a multi-day evaluation
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RevsegError) else str(exc)
        return JobResult(job.key, ERROR_STATUS, reason.splitlines()[0][:500], perf_counter() - start, worker=worker)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _verified_masks(trajectory: Trajectory, final: str | None) -> dict[str, dict[str, Any]]:
    """The masks files the verify turns and attempts point to, all but ``final``, by path (a gone one left out)."""
    referenced = [t.overlay for t in trajectory.turns] + [a.masks for a in trajectory.attempts]
    kept = {}
    for path in dict.fromkeys(p for p in referenced if p and p != final):
        try:
            kept[path] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            continue  # the store then drops the dangling path from the record
    return kept


def _frames_for(job: Job, scratch: Path) -> tuple[Path, list[str]]:
    """The folder the agent reads (the video's, or links to the listed frames) and its frame names in order."""
    from revseg.tools.readers.folder import FolderReader

    video = Path(job.frames_dir)
    if job.frame_files is not None:
        video = scratch / "frames"
        video.mkdir()
        for name in job.frame_files:
            (video / name).symlink_to(Path(job.frames_dir).resolve() / name)
    reader = FolderReader(video)
    names = reader.frame_names
    reader.close()
    return video, names


def run_sync(coroutine: Any) -> Any:
    """Run a coroutine to completion from blocking code, beside the thread's own loop if it has one (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _run_many(agent: ReVSegAgent, jobs: Iterable[Job], concurrency: int) -> AsyncIterator[JobResult]:
    """Jobs ``concurrency`` at a time on one agent, pulled lazily; results as they finish."""
    queue = iter(jobs)
    pending: set[asyncio.Task[JobResult]] = set()

    def refill() -> None:
        while len(pending) < concurrency:
            job = next(queue, None)
            if job is None:
                return
            pending.add(asyncio.ensure_future(arun_job(agent, job)))

    refill()
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.discard(task)
                yield task.result()
            refill()
    finally:
        for task in pending:
            task.cancel()


_DONE = object()


def inline_results(factory: AgentFactory, jobs: Iterable[Job], concurrency: int = 1) -> Iterator[JobResult]:
    """Run jobs with one agent in this process, ``concurrency`` at a time (async policy turns overlap).

    With ``concurrency`` above 1 the jobs run on an event loop in a helper thread and their
    results are handed back here, so the caller stays a plain loop that writes as results come.
    """
    agent = build_agent(factory)
    if concurrency <= 1:
        for job in jobs:
            yield run_job(agent, job)
        return
    results: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    async def pump() -> None:
        async for result in _run_many(agent, jobs, concurrency):
            results.put(result)
            if stop.is_set():
                return

    def loop() -> None:
        try:
            asyncio.run(pump())
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            results.put(exc)
        finally:
            results.put(_DONE)

    thread = threading.Thread(target=loop, name="revseg-eval-loop", daemon=True)
    thread.start()
    try:
        while (item := results.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- local processes ----------------------------------------------------------------------------

_AGENT: Any = None
_INIT_ERROR: RevsegError | None = None


def _init_process(factory: AgentFactory, parent: int, threads: int) -> None:
    """Pool initializer: ignore Ctrl-C, exit with the driver, cap CPU threads if asked, build this worker's agent."""
    global _AGENT, _INIT_ERROR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if threads:  # read when torch loads; changes CPU float reduction order, so results may differ in the last bits
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))
    try:
        _AGENT = build_agent(factory)
    except RevsegError as exc:  # reported on the first job, with its message intact
        _INIT_ERROR = exc


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def _run_in_process(jobs: list[Job]) -> list[JobResult]:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    if len(jobs) == 1:
        return [run_job(_AGENT, jobs[0])]

    async def run_all() -> list[JobResult]:
        return [result async for result in _run_many(_AGENT, jobs, len(jobs))]

    results: list[JobResult] = run_sync(run_all())
    return results


def _chunks(jobs: Iterable[Job], size: int) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def process_results(
    factory: AgentFactory,
    jobs: Iterable[Job],
    workers: int,
    *,
    concurrency: int = 1,
    threads: int | None = None,
) -> Iterator[JobResult]:
    """Run jobs on ``workers`` spawned processes, each with its own agent; yield results as they finish.

    Each task sent to a worker is ``concurrency`` jobs run together on its event loop (their
    results come back together). At most two tasks per worker are queued at a time, so an
    interrupt loses little. On Ctrl-C or any error the workers are terminated at once (a
    model call may take minutes). ``threads`` caps each worker's CPU math threads
    (``OMP_NUM_THREADS``, unless set): for CPU-bound models, ``cpu_count // workers`` stops N
    workers from oversubscribing the cores, but a different thread count can change CPU
    results in the last bits, so by default workers keep the threads a single process would
    use (identical results).
    """
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_process,
        initargs=(factory, os.getpid(), threads or 0),
    )
    pending: set[Future[list[JobResult]]] = set()
    tasks = _chunks(jobs, max(concurrency, 1))
    try:
        for chunk in tasks:
            pending.add(pool.submit(_run_in_process, chunk))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    results = future.result()
                except BrokenProcessPool as exc:
                    raise RevsegError(
                        "a worker process died (out of memory, or killed); finished samples are saved: "
                        "rerun with --resume"
                    ) from exc
                yield from results
                next_chunk = next(tasks, None)
                if next_chunk is not None:
                    pending.add(pool.submit(_run_in_process, next_chunk))
    except BaseException:  # Ctrl-C, an error, or the consumer stopped early: do not wait for running models
        _terminate(pool)
        raise
    pool.shutdown(wait=False)  # every result is in; workers exit in the background while the driver scores


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what is queued, kill the workers (ProcessPoolExecutor has no public kill)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


# --- Ray ----------------------------------------------------------------------------------------


class _RayWorker:
    """A Ray actor body: one agent, built when the actor starts; jobs run on the actor's event loop."""

    def __init__(self, factory: AgentFactory) -> None:
        self.agent = build_agent(factory)

    async def run(self, job: Job) -> JobResult:
        result = await arun_job(self.agent, job)
        result.node = ray_node_id()
        return result


def ray_node_id() -> str:
    """The id of the Ray node this code runs on (empty outside a Ray worker)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def ray_results(
    factory: AgentFactory,
    jobs: Iterable[Job],
    workers: int,
    address: str,
    *,
    concurrency: int = 1,
    gpus_per_worker: float | None = None,
) -> Iterator[JobResult]:
    """Run jobs on ``workers`` Ray actors, each holding its own agent and running ``concurrency`` jobs at once.

    ``address`` is what ``ray.init`` takes (``auto``, ``ray://host:10001``, ``host:6379``) or
    ``local`` to start a private cluster on this machine. ``gpus_per_worker`` defaults to 1
    when the cluster has a GPU per worker, else 0. Every node must see the frames at the same
    paths; results travel back to this process, which writes them. A node lost mid-run costs
    only its jobs in flight, which the surviving actors run again (:func:`ray_actor_results`).
    """
    return ray_actor_results(
        _RayWorker, (factory,), jobs, workers, address, concurrency=concurrency, gpus_per_worker=gpus_per_worker
    )


def ray_actor_results(
    body: type,
    args: tuple[Any, ...],
    jobs: Iterable[Any],
    workers: int,
    address: str,
    *,
    concurrency: int = 1,
    gpus_per_worker: float | None = None,
) -> Iterator[Any]:
    """``workers`` Ray actors of class ``body`` (built with ``args``) run each job by ``await actor.run(job)``.

    The generic fan-out behind ``eval --ray`` and ``collect --ray``: jobs are pulled lazily, at
    most ``concurrency`` in flight per actor, the least loaded actor first; results are yielded
    as they arrive, so the driver alone writes them, once each.

    When an actor is lost (its node removed or dead, its process killed) this driver, not
    Ray, recovers: the actor is dropped and its jobs in flight go to the surviving actors.
    Ray's own actor restarts would not help here: a restarted actor waits for a free CPU,
    and the lost node took its CPU with it while the others are held by the survivors. A
    lost job never returned a result, so nothing is recorded twice. When every actor is
    lost, :class:`~revseg.errors.RevsegError` says so; the results already yielded are kept
    (written by the caller) and ``--resume`` runs the rest. An actor that fails to build
    (a bad spec) ends the run at once with its error.
    """
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError as exc:
        raise SpecError("--ray needs the ray package: pip install 'revseg[ray]'") from exc

    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    gpus = gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= workers else 0.0
    per_actor = max(concurrency, 1)
    remote: Any = ray.remote  # its stubs miss actor options such as max_concurrency
    actor_class = remote(num_cpus=1, num_gpus=gpus, max_concurrency=per_actor)(body)
    actors: dict[int, Any] = {i: actor_class.remote(*args) for i in range(workers)}
    load = dict.fromkeys(actors, 0)
    in_flight: dict[Any, tuple[int, Any]] = {}
    retry: list[Any] = []  # jobs of lost actors, run before new ones
    queue_ = iter(jobs)
    try:
        while True:
            while actors and len(in_flight) < len(actors) * per_actor:
                job = retry.pop() if retry else next(queue_, None)
                if job is None:
                    break
                actor = min(actors, key=load.__getitem__)
                load[actor] += 1
                in_flight[actors[actor].run.remote(job)] = (actor, job)
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                actor, job = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except RayActorError as exc:
                    if exc.actor_init_failed:
                        raise RevsegError(f"a Ray worker could not start: {_first_line(exc)}") from exc
                    retry.append(job)
                    if (lost := actors.pop(actor, None)) is not None:  # its other jobs in flight come back here too
                        load.pop(actor)
                        ray.kill(lost)  # it may only be unreachable: it must not hold a CPU or write anything
                        again = 1 + sum(1 for owner, _ in in_flight.values() if owner == actor)
                        logger.warning(
                            "lost a Ray worker (%s); %d job(s) in flight run again on the %d left",
                            _first_line(exc),
                            again,
                            len(actors),
                        )
                    if not actors:
                        raise RevsegError(
                            f"every Ray worker was lost (last: {_first_line(exc)}); finished samples are saved: "
                            "rerun with --resume"
                        ) from exc
                    continue
                if actor in load:  # else a lost actor's late answer: still its job's only result
                    load[actor] -= 1
                yield result
    finally:
        for handle in actors.values():
            ray.kill(handle)
        if started:
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
