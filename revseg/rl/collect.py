"""Rollout collection: the chain n times per (video, query) with sampling on, scored, stored by group.

Each rollout is a run of :class:`~revseg.agents.ReVSegAgent` with a per-run sampling seed,
so a rollout is recorded exactly as a user's run is, whatever chain program the settings
name; what a rebuild of its turns reads besides the video (the masks a ``look_again``
verify turn saw drawn) stays in the store's ``artefacts/`` folder. Each group's n
rollouts run concurrently (a local ``hf:`` policy
takes them one at a time; an ``openai:`` server, vLLM being the fast path, takes them
together), are scored against ground truth (:mod:`revseg.rl.rewards`) and appended to the
:class:`~revseg.trajectory_store.TrajectoryStore` with one write. So a crash (even SIGKILL)
loses only the groups in flight, and ``resume=True`` skips every (video, query) whose
group is already whole in the store and runs the rest, including a group the crash cut.

Ground truth comes in through :class:`CollectItem`: a key, a video, a query and a
function that builds the item's :class:`~revseg.rl.groundtruth.GroundTruth` when its
group is scored. :func:`benchmark_items` makes items from a benchmark reader of
``revseg.evals`` (masks -> boxes, DESIGN.md 1.5); any other source is a list of items.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revseg.errors import RevsegError
from revseg.rl.groundtruth import GroundTruth, MaskGroundTruth
from revseg.rl.rewards import RewardConfig, score
from revseg.settings import DEFAULT_COLLECT_SAMPLING, ChainSettings, SamplingParams
from revseg.trajectory import Trajectory
from revseg.trajectory_store import TrajectoryStore

if TYPE_CHECKING:
    from revseg.agents import ReVSegAgent

logger = logging.getLogger(__name__)

ROLLOUT_ARTEFACTS = "artefacts"
"""The store's folder for what a rollout's rebuild reads besides the video (look_again's verify masks)."""


@dataclass(frozen=True)
class CollectItem:
    """One (video, query) to roll out: ``truth()`` builds its ground truth when the group is scored."""

    key: str
    video: str
    query: str
    truth: Callable[[], GroundTruth] = field(compare=False)


@dataclass
class CollectReport:
    """What a collection run did."""

    groups_written: int = 0
    rollouts: int = 0
    skipped_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    mean_reward: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)


def rollout_seed(base: int | None, key: str, index: int) -> int | None:
    """A per-rollout sampling seed derived from ``base``, the item key and the rollout index (None stays None)."""
    if base is None:
        return None
    digest = hashlib.sha256(f"{base}:{key}:{index}".encode()).hexdigest()
    return int(digest[:8], 16)


def done_keys(store: TrajectoryStore) -> set[str]:
    """Item keys (``query_id``) that already have a whole group in ``store``."""
    if not (store.root / "store.json").exists():
        return set()
    return {g[0].query_id for g in store.groups(complete=True).values() if g and g[0].query_id}


def collect(
    items: Iterable[CollectItem],
    policy: Any,
    store: TrajectoryStore | str | Path,
    *,
    group_size: int = 8,
    sampling: SamplingParams = DEFAULT_COLLECT_SAMPLING,
    settings: ChainSettings | None = None,
    tracker: Any = None,
    reward_config: RewardConfig | None = None,
    workers: int = 1,
    resume: bool = False,
    seed: int | None = None,
    frame_backend: str = "auto",
    limit: int | None = None,
    on_group: Callable[[str, list[Trajectory]], None] | None = None,
    ray_address: str | None = None,
) -> CollectReport:
    """Roll out every item ``group_size`` times, score each run and append each group to ``store``.

    ``policy`` is a Policy (or a spec string, built once); ``tracker`` defaults to none,
    since rewards need only the keyframe and box. ``workers`` groups are in flight at
    once. With ``resume``, items whose group is already whole in the store are skipped.
    Bad inputs (a missing video) are reported per item in ``failed`` and do not stop the run.
    With ``ray_address`` the groups run on ``workers`` Ray actors (:mod:`revseg.rl.ray_collect`;
    ``policy`` and ``tracker`` are then spec strings or picklable factories).
    """
    options: dict[str, Any] = {
        "group_size": group_size,
        "sampling": sampling,
        "settings": settings,
        "tracker": tracker,
        "reward_config": reward_config,
        "workers": workers,
        "resume": resume,
        "seed": seed,
        "frame_backend": frame_backend,
        "limit": limit,
        "on_group": on_group,
    }
    if ray_address is not None:
        from revseg.rl.ray_collect import ray_collect

        return ray_collect(items, policy, store, ray_address, **options)
    return asyncio.run(acollect(items, policy, store, **options))


async def acollect(
    items: Iterable[CollectItem],
    policy: Any,
    store: TrajectoryStore | str | Path,
    *,
    group_size: int = 8,
    sampling: SamplingParams = DEFAULT_COLLECT_SAMPLING,
    settings: ChainSettings | None = None,
    tracker: Any = None,
    reward_config: RewardConfig | None = None,
    workers: int = 1,
    resume: bool = False,
    seed: int | None = None,
    frame_backend: str = "auto",
    limit: int | None = None,
    on_group: Callable[[str, list[Trajectory]], None] | None = None,
) -> CollectReport:
    """The async form of :func:`collect` (same arguments), for callers inside an event loop."""
    from revseg.agents import ReVSegAgent

    if group_size < 1 or workers < 1:
        raise ValueError("group_size and workers must be at least 1")
    store = store if isinstance(store, TrajectoryStore) else TrajectoryStore(store)
    # The agent runs and records every rollout, as it does a user's run: one frame cache for the
    # whole collection (a video's items and their rollouts decode it once), no overlay or report.
    agent = ReVSegAgent(
        policy,
        tracker,
        settings=settings,
        sampling=sampling,
        frame_backend=frame_backend,
        overlay=False,
        report=False,
    )
    artefacts = store.root / ROLLOUT_ARTEFACTS
    report = CollectReport()
    skip = done_keys(store) if resume else set()
    gate = asyncio.Semaphore(workers)
    totals: list[float] = []

    async def one(item: CollectItem) -> None:
        async with gate:
            try:
                group = await _rollout_group(agent, item, sampling, group_size, seed, artefacts)
                truth = await asyncio.to_thread(item.truth)
                scored = [score(t, truth, reward_config).model_copy(update={"group_size": group_size}) for t in group]
                await asyncio.to_thread(store.append, scored)
            except (RevsegError, OSError) as exc:  # one bad item (a broken video) must not stop a long collection
                logger.warning("collect: %s failed: %s", item.key, exc)
                report.failed.append((item.key, str(exc)))
                return
        report.groups_written += 1
        report.rollouts += len(scored)
        for t in scored:
            report.status_counts[t.status.value] = report.status_counts.get(t.status.value, 0) + 1
            totals.append((t.rewards or {}).get("total", 0.0))
        if on_group is not None:
            on_group(item.key, scored)

    todo: list[CollectItem] = []
    for item in items:
        if item.key in skip:
            report.skipped_done += 1
            continue
        if limit is not None and len(todo) >= limit:
            break
        todo.append(item)
    try:
        await asyncio.gather(*(one(item) for item in todo))
    finally:
        agent.context.frame_cache.close()
    report.mean_reward = sum(totals) / len(totals) if totals else 0.0
    return report


async def _rollout_group(
    agent: ReVSegAgent, item: CollectItem, sampling: SamplingParams, n: int, seed: int | None, artefacts: Path
) -> list[Trajectory]:
    """n runs of the agent on one item, concurrently, each with its own sampling seed; one group id.

    Each run writes into its own folder under ``artefacts``; what its record needs to be
    rebuilt (the masks a look_again verify turn saw drawn) stays there, the rest is removed.
    """
    group_id = uuid.uuid4().hex

    async def run(index: int) -> Trajectory:
        per_run = sampling.model_copy(update={"seed": rollout_seed(seed, item.key, index)})
        out = artefacts / f"{group_id}-{index}"
        try:
            result = await agent.arun(
                item.video, item.query, out, query_id=item.key, group_id=group_id, sampling=per_run
            )
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        trajectory = result.trajectory
        if not _keep_referenced(out, trajectory):
            shutil.rmtree(out, ignore_errors=True)
        trajectory.outputs = {}  # artefact paths other than the rebuild's are gone
        return trajectory

    return list(await asyncio.gather(*(run(i) for i in range(n))))


def _keep_referenced(out: Path, trajectory: Trajectory) -> bool:
    """Delete every file under ``out`` but the mask files the record's verify turns and attempts point to.

    Returns whether any is kept. The paper's chain refers to none, so its rollouts leave nothing behind.
    """
    paths = [t.overlay for t in trajectory.turns] + [a.masks for a in trajectory.attempts]
    referenced = {Path(p).resolve() for p in paths if p}
    if not out.is_dir():
        return False
    for file in [p for p in out.rglob("*") if p.is_file()]:
        if file.resolve() not in referenced:
            file.unlink(missing_ok=True)
    return any(p.is_file() for p in out.rglob("*"))


# --------------------------------------------------------------------------- benchmarks as items


def benchmark_items(
    name: str,
    data_root: str | Path,
    split: str | None = None,
    *,
    link_dir: str | Path | None = None,
    exclude_videos: Iterable[str] = (),
) -> Iterator[CollectItem]:
    """Items for every sample of a ``revseg.evals`` benchmark split that has local ground truth.

    Ground truth is the sample's mask track, read when its group is scored and turned
    into per-frame union boxes on demand. A sample whose frames are a subset of its
    folder is given a folder of links to exactly those frames (under ``link_dir``).
    Videos in ``exclude_videos`` give no items (the list ``revseg.rl.curate`` writes).
    """
    from revseg.errors import DatasetError
    from revseg.evals.benchmarks import get_benchmark

    benchmark = get_benchmark(name, data_root, split, exclude_videos=exclude_videos)
    if not benchmark.has_ground_truth:
        raise DatasetError(
            f"{benchmark.title} {benchmark.split} has no local ground truth (it is scored by its server); "
            "collect needs ground truth: choose a training or local-GT split"
        )
    links = Path(link_dir) if link_dir is not None else Path(tempfile.mkdtemp(prefix="revseg-frames-"))
    for sample in benchmark.samples():
        video = _video_folder(sample.frames_dir, sample.frame_files, links / sample.video)
        yield CollectItem(
            key=f"{benchmark.name}/{benchmark.split}/{sample.key}",
            video=str(video),
            query=sample.query,
            truth=_truth_from(benchmark, sample),
        )


def _truth_from(benchmark: Any, sample: Any) -> Callable[[], GroundTruth]:
    def build() -> GroundTruth:
        masks = benchmark.ground_truth(sample).masks  # (T, H, W) bool, the union of the query's objects
        return MaskGroundTruth(lambda i: masks[i] if 0 <= i < len(masks) else None)

    return build


def _video_folder(folder: Path, frame_files: Sequence[str], links: Path) -> Path:
    """``folder`` when it holds exactly ``frame_files`` (in natural order); else a folder of numbered links."""
    from revseg.tools.readers.folder import natural_key

    present = sorted(
        (p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name[0] != "."),
        key=natural_key,
    )
    if present == list(frame_files):
        return folder
    links.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(frame_files):
        link = links / f"{index:06d}{Path(name).suffix.lower()}"
        if not link.exists():
            link.symlink_to((folder / name).resolve())
    return links
