"""Rollout collection: the chain n times per (video, query) with sampling on, scored, stored by group.

Each group's n rollouts run concurrently through the compiled graph (a local ``hf:`` policy
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
    from revseg.tools.frame_cache import ResizedFrameCache

logger = logging.getLogger(__name__)

"""Sampling on, untruncated: behaviour log-probs then equal the model's own tempered distribution."""


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
    if ray_address is not None:
        from revseg.rl.ray_collect import ray_collect

        return ray_collect(
            items,
            policy,
            store,
            ray_address,
            group_size=group_size,
            sampling=sampling,
            settings=settings,
            tracker=tracker,
            reward_config=reward_config,
            workers=workers,
            resume=resume,
            seed=seed,
            frame_backend=frame_backend,
            limit=limit,
            on_group=on_group,
        )
    return asyncio.run(
        acollect(
            items,
            policy,
            store,
            group_size=group_size,
            sampling=sampling,
            settings=settings,
            tracker=tracker,
            reward_config=reward_config,
            workers=workers,
            resume=resume,
            seed=seed,
            frame_backend=frame_backend,
            limit=limit,
            on_group=on_group,
        )
    )


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
    from revseg.graphs import build_graph
    from revseg.policies import build_policy
    from revseg.tools.frame_cache import ResizedFrameCache

    if group_size < 1 or workers < 1:
        raise ValueError("group_size and workers must be at least 1")
    store = store if isinstance(store, TrajectoryStore) else TrajectoryStore(store)
    policy = build_policy(policy) if isinstance(policy, str) else policy
    settings = settings or ChainSettings()
    report = CollectReport()
    skip = done_keys(store) if resume else set()
    graph = build_graph()
    gate = asyncio.Semaphore(workers)
    totals: list[float] = []
    frames = ResizedFrameCache()  # one for the whole collection: a video's items and their rollouts decode it once

    async def one(item: CollectItem) -> None:
        async with gate:
            try:
                group = await _rollout_group(
                    graph, item, policy, tracker, settings, sampling, group_size, seed, frame_backend, frames
                )
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
        frames.close()
    report.mean_reward = sum(totals) / len(totals) if totals else 0.0
    return report


async def _rollout_group(
    graph: Any,
    item: CollectItem,
    policy: Any,
    tracker: Any,
    settings: ChainSettings,
    sampling: SamplingParams,
    n: int,
    seed: int | None,
    frame_backend: str,
    cache: ResizedFrameCache,
) -> list[Trajectory]:
    """n runs of the chain on one item, concurrently, through the collection's frame cache; one group id."""
    from revseg.graphs import ChainContext, ChainInput, trajectory_from_state

    group_id = uuid.uuid4().hex

    async def run(index: int) -> Trajectory:
        context = ChainContext(
            policy=policy,
            tracker=tracker,
            settings=settings,
            sampling=sampling.model_copy(update={"seed": rollout_seed(seed, item.key, index)}),
            frame_backend=frame_backend,
            frame_cache=cache,
        )
        with tempfile.TemporaryDirectory(prefix="revseg-collect-") as out:
            inputs = ChainInput(video_path=item.video, query=item.query, out_dir=out)
            state = await graph.ainvoke(inputs, context=context)
            trajectory = trajectory_from_state(dict(state), context, query_id=item.key, group_id=group_id)
        trajectory.outputs = {}  # the temporary folder is gone: no artefact paths in the record
        return trajectory

    return list(await asyncio.gather(*(run(i) for i in range(n))))


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
