"""Rollout collection fanned out over a Ray cluster: ``collect(..., ray_address=...)`` and ``collect --ray``.

Each actor builds its own policy (and tracker) once, from a spec string or a picklable
zero-argument factory, and rolls out one item's group at a time with
:func:`~revseg.rl.collect.acollect`; the scored group travels back, and this driver alone
appends it to the store, so the store is written as a local collection writes it: one
append per group, ``--resume`` skipping whole groups. The actors are
:func:`revseg.evals.workers.ray_actor_results`'s, so a node lost mid-run costs only its
groups in flight, which the surviving actors roll out again; nothing is stored twice.

Ground truth does not travel as the item's ``truth`` function (a benchmark reader holds
locks and whole mask files): the driver reads the boxes of the frames the chain will
sample (:func:`~revseg.tools.frames.sample_indices` of the video's length, the frames
rewards read) and ships those, so rewards equal a local collection's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revseg.errors import InputError, RevsegError
from revseg.evals.workers import ray_actor_results
from revseg.rl.collect import CollectItem, CollectReport, acollect, done_keys
from revseg.rl.rewards import RewardConfig
from revseg.settings import ChainSettings, SamplingParams
from revseg.trajectory import BoxXYXY, Trajectory
from revseg.trajectory_store import TrajectoryStore

Factory = str | Callable[[], Any]
"""A backend spec string, or a picklable zero-argument callable that builds the backend on the actor."""


@dataclass(frozen=True)
class SampledBoxes:
    """Ground truth shipped to an actor: the GT box of each frame the chain samples (None: absent)."""

    boxes: dict[int, BoxXYXY | None]

    def __call__(self) -> SampledBoxes:
        return self

    def box(self, frame_index: int) -> BoxXYXY | None:
        """The shipped box; a frame that was not shipped is a bug in what the driver expected to be read."""
        if frame_index not in self.boxes:
            raise InputError(f"no ground truth was shipped for frame {frame_index} (only {sorted(self.boxes)})")
        return self.boxes[frame_index]


@dataclass(frozen=True)
class _Outcome:
    key: str
    group: list[str] | None  # the scored trajectories as JSON, or None when the item failed
    reason: str | None = None


class _HeldGroups(TrajectoryStore):
    """A store that keeps appended records in memory: the actor sends them back instead of writing."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent/revseg-held-groups"))
        self.records: list[Trajectory] = []

    def append(self, records: Trajectory | Sequence[Trajectory]) -> Path:
        self.records.extend([records] if isinstance(records, Trajectory) else records)
        return self.root


class _RayCollector:
    """A Ray actor body: its own policy and tracker; one item's group per call."""

    def __init__(self, policy: Factory, tracker: Factory | None, options: dict[str, Any]) -> None:
        from revseg.policies import build_policy
        from revseg.tools.trackers import build_tracker

        self.policy = build_policy(policy) if isinstance(policy, str) else policy()
        self.tracker = None if tracker is None else build_tracker(tracker) if isinstance(tracker, str) else tracker()
        self.options = options

    async def run(self, item: CollectItem) -> _Outcome:
        held = _HeldGroups()
        report = await acollect([item], self.policy, held, tracker=self.tracker, workers=1, **self.options)
        if report.failed:
            return _Outcome(item.key, None, report.failed[0][1])
        return _Outcome(item.key, [t.model_dump_json() for t in held.records])


def ray_collect(
    items: Iterable[CollectItem],
    policy: Factory,
    store: TrajectoryStore | str | Path,
    address: str,
    *,
    group_size: int,
    sampling: SamplingParams,
    settings: ChainSettings | None,
    tracker: Factory | None,
    reward_config: RewardConfig | None,
    workers: int,
    resume: bool,
    seed: int | None,
    frame_backend: str,
    limit: int | None,
    on_group: Callable[[str, list[Trajectory]], None] | None,
) -> CollectReport:
    """:func:`~revseg.rl.collect.collect` with ``workers`` Ray actors at ``address``, one group in flight each.

    ``policy`` and ``tracker`` must be spec strings or picklable factories (a built model
    does not travel). Seeds derive from the item key as in a local run, so with a fixed
    ``seed`` the store holds the same keys and rewards as a local collection's.
    """
    if not isinstance(policy, str) and not callable(policy):
        raise InputError("collect over Ray needs a policy spec string or a picklable factory, not a built policy")
    if tracker is not None and not isinstance(tracker, str) and not callable(tracker):
        raise InputError("collect over Ray needs a tracker spec string or a picklable factory")
    settings = settings or ChainSettings()
    store = store if isinstance(store, TrajectoryStore) else TrajectoryStore(store)
    report = CollectReport()
    skip = done_keys(store) if resume else set()
    todo: list[CollectItem] = []
    for item in items:
        if item.key in skip:
            report.skipped_done += 1
        elif limit is None or len(todo) < limit:
            todo.append(item)
    options = {
        "group_size": group_size,
        "sampling": sampling,
        "settings": settings,
        "reward_config": reward_config,
        "seed": seed,
        "frame_backend": frame_backend,
    }
    totals: list[float] = []
    shipped = _with_sampled_truth(todo, settings, frame_backend, report)
    for outcome in ray_actor_results(_RayCollector, (policy, tracker, options), shipped, workers, address):
        if outcome.group is None:
            report.failed.append((outcome.key, outcome.reason or "failed"))
            continue
        group = [Trajectory.model_validate_json(text) for text in outcome.group]
        store.append(group)
        report.groups_written += 1
        report.rollouts += len(group)
        for t in group:
            report.status_counts[t.status.value] = report.status_counts.get(t.status.value, 0) + 1
            totals.append((t.rewards or {}).get("total", 0.0))
        if on_group is not None:
            on_group(outcome.key, group)
    report.mean_reward = sum(totals) / len(totals) if totals else 0.0
    return report


def _with_sampled_truth(
    items: Iterable[CollectItem], settings: ChainSettings, frame_backend: str, report: CollectReport
) -> Iterator[CollectItem]:
    """Each item with its ground truth read here, on the sampled frames; an unreadable item goes to ``failed``."""
    from revseg.tools.frames import open_video, sample_indices

    for item in items:
        try:
            reader = open_video(item.video, frame_backend)
            length = reader.ref.num_frames
            reader.close()
            truth = item.truth()
            boxes = {i: truth.box(i) for i in dict.fromkeys(sample_indices(length, settings.num_frames))}
        except (RevsegError, OSError) as exc:  # as a local collection: one bad item does not stop the run
            report.failed.append((item.key, str(exc)))
            continue
        yield CollectItem(item.key, item.video, item.query, SampledBoxes(boxes))
