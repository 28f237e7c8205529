"""The synthetic long-clip set: a briefly visible target, a look-alike, an oracle for both chain programs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from revseg.agents import ReVSegAgent
from revseg.evals.benchmarks import get_benchmark
from revseg.evals.runner import evaluate
from revseg.evals.workers import quiet_agent
from revseg.settings import ChainSettings
from revseg.testing.longclips import LongClip, LongClipOracle, LongClipTracker, make_long_clips, write_revos_layout
from revseg.tools.frames import sample_indices
from revseg.trajectory import Status, Trajectory

CLIPS = make_long_clips(seed=3, count=12, num_frames=96)
PAPER = ChainSettings(num_frames=8)
LOOK = ChainSettings(num_frames=8, program="look_again")


def seen_by_paper(clip: LongClip, n: int = 8) -> bool:
    return any(clip.box(t) is not None for t in sample_indices(clip.num_frames, n))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("longclips")
    for clip in CLIPS:
        clip.write(root / clip.name)
    return root


def run(clip: LongClip, videos: Path, out: Path, settings: ChainSettings, **oracle: object) -> Trajectory:
    agent = ReVSegAgent(
        LongClipOracle(CLIPS, **oracle),
        LongClipTracker(CLIPS),
        settings=settings,
        overlay=False,
        report=False,  # type: ignore[arg-type]
    )
    return agent.run(videos / clip.name, clip.query, out).trajectory


def test_the_target_is_on_screen_only_in_its_window_and_the_lookalike_always() -> None:
    for clip in CLIPS:
        start, stop = clip.window
        shown = [t for t in range(clip.num_frames) if clip.box(t) is not None]
        assert shown == list(range(start, stop)) and stop - start <= 0.08 * clip.num_frames + 1
        assert all(clip.box(t, clip.lookalike) is not None for t in range(clip.num_frames))
        target, lookalike = clip.clip.shapes[clip.clip.target], clip.clip.shapes[clip.lookalike]
        assert target.kind == lookalike.kind and target.colour != lookalike.colour
        assert clip.query == f"the {target.kind} that appears only briefly"
    assert [c.clip for c in make_long_clips(seed=3, count=12, num_frames=96)] == [c.clip for c in CLIPS]


def test_evenly_spaced_frames_often_miss_the_target() -> None:
    missed = [not seen_by_paper(c) for c in CLIPS]
    assert 0 < sum(missed) < len(CLIPS)  # some clips are missed, some are not: both programs have work


def test_the_revos_layout_reads_back_with_the_exact_masks(tmp_path: Path) -> None:
    root = write_revos_layout(tmp_path / "ReVOS", CLIPS[:3])
    benchmark = get_benchmark("revos", root, "valid")
    samples = benchmark.samples()
    assert [s.video for s in samples] == [c.name for c in CLIPS[:3]] and [s.query for s in samples] == [
        c.query for c in CLIPS[:3]
    ]
    truth = benchmark.ground_truth(samples[1]).masks
    assert np.array_equal(truth, np.stack([CLIPS[1].clip.mask(t) for t in range(CLIPS[1].num_frames)]))


def test_the_paper_chain_oracle_names_the_lookalike_or_nothing_when_its_frames_miss_the_target(
    videos: Path, tmp_path: Path
) -> None:
    missed = next(c for c in CLIPS if not seen_by_paper(c))
    record = run(missed, videos, tmp_path / "a", PAPER, first_box_error=0.0)
    lookalike = missed.clip.shapes[missed.lookalike].name
    assert record.status == Status.OK and record.targets[0].description == f"the {lookalike}"
    nothing = run(missed, videos, tmp_path / "b", PAPER, first_box_error=0.0, missed="none")
    assert nothing.status == Status.NO_TARGET


def test_look_again_zooms_onto_the_window_the_paper_chain_missed(videos: Path, tmp_path: Path) -> None:
    missed = next(c for c in CLIPS if not seen_by_paper(c))
    tracker = LongClipTracker(CLIPS)
    agent = ReVSegAgent(LongClipOracle(CLIPS, first_box_error=0.0), tracker, settings=LOOK, overlay=False, report=False)
    record = agent.run(videos / missed.name, missed.query, tmp_path / "look").trajectory
    assert [t.name for t in record.turns] == ["interpret", "zoom", "ground", "verify"]
    start, stop = missed.window
    assert start <= record.targets[0].frame_index < stop
    assert tracker.calls == [(missed.name, record.targets[0].frame_index, missed.clip.target)]
    assert [a.verdict for a in record.attempts] == ["accept"]


def test_a_wrong_first_box_is_rejected_by_verify_and_the_second_tracks_the_target(videos: Path, tmp_path: Path) -> None:
    seen = next(c for c in CLIPS if seen_by_paper(c))
    tracker = LongClipTracker(CLIPS)
    agent = ReVSegAgent(LongClipOracle(CLIPS, first_box_error=1.0), tracker, settings=LOOK, overlay=False, report=False)
    record = agent.run(videos / seen.name, seen.query, tmp_path / "look").trajectory
    kinds = [t.name for t in record.turns]
    assert kinds[:4] == ["interpret", "ground", "verify", "reselect"] and kinds[-2:] == ["ground", "verify"]
    assert [a.verdict for a in record.attempts] == ["reject", "accept"]
    assert [shape for _, _, shape in tracker.calls] == [seen.lookalike, seen.clip.target]
    paper = LongClipTracker(CLIPS)
    ReVSegAgent(LongClipOracle(CLIPS, first_box_error=1.0), paper, settings=PAPER, overlay=False, report=False).run(
        videos / seen.name, seen.query, tmp_path / "paper"
    )
    assert [shape for _, _, shape in paper.calls] == [seen.lookalike]  # no second look: the wrong object stands


def test_the_eval_harness_scores_look_again_above_the_paper_chain_on_the_set(tmp_path: Path) -> None:
    clips = CLIPS[:6]
    root = write_revos_layout(tmp_path / "ReVOS", clips)
    scores = {}
    for name, settings in (("paper", PAPER), ("look_again", LOOK)):

        def factory(settings: ChainSettings = settings) -> ReVSegAgent:
            return quiet_agent(LongClipOracle(CLIPS, first_box_error=0.3), LongClipTracker(CLIPS), settings=settings)

        report = evaluate(get_benchmark("revos", root, "valid"), tmp_path / name, factory)
        assert len(report.samples) == 6 and all(s.status == "ok" for s in report.samples)
        scores[name] = float(np.mean([s.JF for s in report.samples]))
    assert scores["look_again"] == pytest.approx(1.0, abs=0.02) and scores["paper"] < scores["look_again"] - 0.05


def test_over_http_the_oracle_takes_the_same_turns_as_in_process(videos: Path, tmp_path: Path) -> None:
    from revseg.testing.chat_server import chat_server
    from revseg.testing.longclips import oracle_responder

    clip = next(c for c in CLIPS if not seen_by_paper(c))
    local = run(clip, videos, tmp_path / "local", LOOK, first_box_error=1.0)
    with chat_server(oracle_responder(LongClipOracle(CLIPS, first_box_error=1.0))) as url:
        agent = ReVSegAgent(
            "openai:oracle",
            LongClipTracker(CLIPS),
            settings=LOOK,
            policy_options={"base_url": url},
            overlay=False,
            report=False,
        )
        remote = agent.run(videos / clip.name, clip.query, tmp_path / "remote").trajectory
    assert [t.name for t in remote.turns] == [t.name for t in local.turns]
    assert [t.response for t in remote.turns] == [t.response for t in local.turns]
    assert remote.targets == local.targets and len(local.turns) > 4


def test_when_only_the_rejected_frame_shows_the_target_the_oracle_zooms_and_picks_another(
    videos: Path, tmp_path: Path
) -> None:
    once = next(c for c in CLIPS if sum(c.box(t) is not None for t in sample_indices(c.num_frames, 8)) == 1)
    record = run(once, videos, tmp_path / "look", LOOK, first_box_error=1.0)
    kinds = [t.name for t in record.turns]
    assert kinds == ["interpret", "ground", "verify", "reselect", "zoom", "ground", "verify"]
    rejected, accepted = record.attempts
    assert (rejected.verdict, accepted.verdict) == ("reject", "accept")
    assert accepted.targets[0].frame_index != rejected.targets[0].frame_index  # excluded in the zoomed view too
    assert record.status == Status.OK and record.reason is None


def test_a_grid_rounds_the_oracles_boxes_and_they_still_land_on_the_target(videos: Path, tmp_path: Path) -> None:
    settings = ChainSettings(num_frames=8, keyframe_size=(224, 224), program="look_again")
    seen = next(c for c in CLIPS if seen_by_paper(c))
    tracker = LongClipTracker(CLIPS)
    oracle = LongClipOracle(CLIPS, first_box_error=0.0, grid=14)
    record = (
        ReVSegAgent(oracle, tracker, settings=settings, overlay=False, report=False)
        .run(videos / seen.name, seen.query, tmp_path / "grid")
        .trajectory
    )
    grounds = [t for t in record.turns if t.name == "ground"]
    coords = [c for t in grounds for c in (t.parsed or {})["boxes"][0]["coords"]]
    assert coords and all(c % 14 == 0 for c in coords), coords
    assert [shape for _, _, shape in tracker.calls] == [seen.clip.target]
    assert [a.verdict for a in record.attempts] == ["accept"]
    with pytest.raises(ValueError, match="grid"):
        LongClipOracle(CLIPS, grid=0)


def test_an_eval_record_of_look_again_keeps_the_masks_verify_saw_so_it_can_be_rescored_and_rebuilt(
    tmp_path: Path,
) -> None:
    from PIL import Image

    from revseg.graphs.images import turn_images
    from revseg.rl.groundtruth import MaskGroundTruth
    from revseg.rl.rewards import compute_rewards

    clips = CLIPS[:2]
    root = write_revos_layout(tmp_path / "ReVOS", clips)

    def factory() -> ReVSegAgent:  # every first box on the look-alike: a rejected attempt, then an accepted one
        return quiet_agent(LongClipOracle(CLIPS, first_box_error=1.0), LongClipTracker(CLIPS), settings=LOOK)

    out = tmp_path / "eval"
    evaluate(get_benchmark("revos", root, "valid"), out, factory)  # its scratch folders are deleted by now
    for clip in clips:
        (path,) = (out / "runs" / clip.name).glob("*/trajectory.json")
        record = Trajectory.load(path)
        assert [a.verdict for a in record.attempts] == ["reject", "accept"]
        verifies = [t for t in record.turns if t.name == "verify"]
        kept = [t.overlay for t in verifies] + [a.masks for a in record.attempts]
        assert all(p is not None and Path(p).parent == path.parent and Path(p).is_file() for p in kept), kept
        assert verifies[-1].overlay == record.outputs["masks_json"] != verifies[0].overlay
        rewards = compute_rewards(record, MaskGroundTruth(clip.clip.target_mask))
        assert rewards.verify == 1.0  # the oracle's verdicts are the truth
        for turn in verifies:
            images = turn_images(turn.model_dump(mode="json"), lambda i, size: [Image.new("RGB", size) for _ in i])
            assert len(images) == len(turn.image_frames)
            assert any(np.asarray(image).any() for image in images)  # the mask drawn on blank frames
