"""Rollout collection on a synthetic ReVOS training split, through the real benchmark reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.rl.collect import CollectItem, benchmark_items, collect, done_keys, rollout_seed
from revseg.rl.groundtruth import BoxGroundTruth
from revseg.settings import ChainSettings
from revseg.testing import benchmarks as synth
from revseg.trajectory_store import TrajectoryStore

SETTINGS = ChainSettings(num_frames=4, frame_size=(64, 48), keyframe_size=(64, 48))

# Totals the query-box policy earns on default_videos() (static boxes: soft temporal = presence).
EXPECTED = {
    "cat/0": 3.0,  # right box
    "cat/1": 3.0,  # two objects, merged into the union box
    "cat/2": 3.0,  # right "no target"
    "dog/0": 2.0,  # wrong box: format + temporal
    "dog/1": 0.0,  # turn 1 does not parse
    "rain/street/0": 3.0,
    "rain/street/1": 1.5,  # turn 2 does not parse: turn-1 format + temporal
    "rain/street/2": 1.0,  # names a target where there is none: format only
}


@pytest.fixture(scope="module")
def revos_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_revos(tmp_path_factory.mktemp("revos") / "ReVOS", split="train")


def by_key(store: TrajectoryStore) -> dict[str, list]:
    return {g[0].query_id.split("/", 2)[2]: g for g in store.groups(complete=True).values()}


def test_collect_scores_every_group_against_the_benchmarks_ground_truth(revos_train: Path, tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")
    items = benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "links")
    report = collect(items, synth.QueryBoxPolicy(), store, group_size=2, settings=SETTINGS, workers=3, seed=1)
    assert (report.groups_written, report.rollouts, report.failed) == (8, 16, [])
    groups = by_key(store)
    assert {k: [t.rewards["total"] for t in g] for k, g in groups.items()} == {k: [v, v] for k, v in EXPECTED.items()}
    for group in groups.values():
        assert len({t.group_id for t in group}) == 1 and all(t.group_size == 2 for t in group)
        assert all(t.tracker == "none" and t.outputs == {} for t in group)
        assert [t.sampling.seed for t in group] == [rollout_seed(1, group[0].query_id, i) for i in range(2)]
        assert all(t.sampling.temperature == 1.0 for t in group)
    assert report.mean_reward == pytest.approx(sum(EXPECTED.values()) / 8)


def test_resume_skips_whole_groups_and_reruns_a_cut_one(revos_train: Path, tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "store")
    items = list(benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "links"))
    collect(items[:3], synth.QueryBoxPolicy(), store, group_size=2, settings=SETTINGS)
    cut = next(iter(store.groups().values()))[:1]  # a crash left one record of a fourth item's group
    store.append([cut[0].model_copy(update={"query_id": items[3].key, "group_id": "cut", "run_id": "r"})])
    assert done_keys(store) == {i.key for i in items[:3]}
    report = collect(items, synth.QueryBoxPolicy(), store, group_size=2, settings=SETTINGS, resume=True)
    assert (report.skipped_done, report.groups_written) == (3, 5)
    assert len(store.groups(complete=True)) == 8 and "cut" not in store.groups(complete=True)
    again = collect(items, synth.QueryBoxPolicy(), store, group_size=2, settings=SETTINGS, resume=True)
    assert (again.skipped_done, again.groups_written) == (8, 0)


def test_any_source_of_items_works_and_bad_videos_are_reported(revos_train: Path, tmp_path: Path) -> None:
    video = revos_train / "JPEGImages" / "cat"
    truth = BoxGroundTruth({i: [(8, 8, 24, 32)] for i in range(8)})
    items = [
        CollectItem("mine/0", str(video), synth.box_query((8, 8, 24, 32)), lambda: truth),
        CollectItem("mine/1", str(tmp_path / "missing"), "anything", lambda: truth),
    ]
    store = TrajectoryStore(tmp_path / "store")
    report = collect(items, synth.QueryBoxPolicy(), store, group_size=3, settings=SETTINGS)
    assert report.groups_written == 1 and [k for k, _ in report.failed] == ["mine/1"]
    assert [t.rewards["total"] for t in store] == [3.0, 3.0, 3.0]


def test_a_rollout_is_recorded_exactly_as_the_agent_records_a_run_with_that_seed(
    revos_train: Path, tmp_path: Path
) -> None:
    from revseg.agents import ReVSegAgent
    from revseg.settings import DEFAULT_COLLECT_SAMPLING

    item = next(iter(benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "links")))
    store = TrajectoryStore(tmp_path / "store")
    collect([item], synth.QueryBoxPolicy(), store, group_size=1, settings=SETTINGS, seed=5)
    (rollout,) = list(store)
    sampling = DEFAULT_COLLECT_SAMPLING.model_copy(update={"seed": rollout_seed(5, item.key, 0)})
    agent = ReVSegAgent(synth.QueryBoxPolicy(), None, settings=SETTINGS, overlay=False, report=False)
    run = agent.run(item.video, item.query, tmp_path / "run", query_id=item.key, sampling=sampling).trajectory
    varying = {"run_id", "group_id", "group_size", "created_at", "timings", "outputs", "rewards", "turns"}
    assert rollout.model_dump(exclude=varying) == run.model_dump(exclude=varying)
    assert [t.model_dump(exclude={"duration_s"}) for t in rollout.turns] == [
        t.model_dump(exclude={"duration_s"}) for t in run.turns
    ]


def test_the_look_again_program_is_collected_and_keeps_only_what_its_rebuild_reads(tmp_path: Path) -> None:
    from revseg.graphs.images import turn_images
    from revseg.rl.groundtruth import MaskGroundTruth
    from revseg.testing.longclips import LongClipOracle, LongClipTracker, make_long_clips
    from revseg.tools.frame_cache import ResizedFrameCache

    clips = make_long_clips(seed=5, count=2, num_frames=48)
    items = [
        CollectItem(c.name, str(c.write(tmp_path / c.name)), c.query, lambda c=c: MaskGroundTruth(c.clip.target_mask))
        for c in clips
    ]
    store = TrajectoryStore(tmp_path / "store")
    look = ChainSettings(num_frames=8, frame_size=(64, 48), keyframe_size=(64, 48), program="look_again")
    oracle = LongClipOracle(clips, first_box_error=1.0)  # every first box is wrong: verify rejects, then re-grounds
    report = collect(items, oracle, store, group_size=2, settings=look, tracker=LongClipTracker(clips), seed=1)
    assert (report.groups_written, report.failed) == (2, [])
    cache = ResizedFrameCache()
    for t in store:
        assert [a.verdict for a in t.attempts] == ["reject", "accept"] and t.rewards is not None
        verify = [turn for turn in t.turns if turn.name == "verify"]
        assert len(verify) == 2 and all(turn.overlay and Path(turn.overlay).is_file() for turn in verify)
        video = t.video.path
        images = turn_images(verify[0].model_dump(), lambda i, s, video=video: cache.read(video, i, s))
        assert len(images) == len(verify[0].image_frames)  # the rebuild redraws what verify saw
    kept = sorted(p.name for p in (store.root / "artefacts").rglob("*") if p.is_file())
    assert kept and set(kept) == {"masks.json"}  # per-frame PNGs and the run's own files are gone

    paper = TrajectoryStore(tmp_path / "paper")
    collect(items, oracle, paper, group_size=2, settings=SETTINGS, tracker=LongClipTracker(clips))
    assert not any(p.is_file() for p in (paper.root / "artefacts").rglob("*"))
