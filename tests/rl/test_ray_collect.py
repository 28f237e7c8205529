"""`collect(..., ray_address=...)` and `revseg collect --ray` on a real three-node Ray cluster (loopback only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from revseg.errors import InputError
from revseg.rl.collect import CollectReport, benchmark_items, collect
from revseg.rl.ray_collect import SampledBoxes
from revseg.settings import ChainSettings
from revseg.testing import benchmarks as synth
from revseg.trajectory_store import TrajectoryStore
from tests.rl.test_collect import EXPECTED

SETTINGS = ChainSettings(num_frames=4, frame_size=(64, 48), keyframe_size=(64, 48))


@pytest.fixture(scope="module")
def revos_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_revos(tmp_path_factory.mktemp("revos") / "ReVOS", split="train")


def collected(store: Path) -> dict[str, list[tuple[float, int | None, str]]]:
    """Per item key: (total reward, sampling seed, status) of each rollout, in rollout order of seeds."""
    groups = TrajectoryStore(store).groups(complete=True).values()
    return {
        g[0].query_id: sorted(((t.rewards or {})["total"], t.sampling.seed, t.status.value) for t in g) for g in groups
    }


def run(revos: Path, out: Path, **options: Any) -> CollectReport:
    """A collection with the query-box policy: built here, or by each Ray actor from its class."""
    items = benchmark_items("revos", revos, "train", link_dir=out / "frames")
    policy = synth.QueryBoxPolicy if "ray_address" in options else synth.QueryBoxPolicy()
    return collect(items, policy, out, group_size=2, settings=SETTINGS, seed=1, **options)


@pytest.mark.ray_cluster
@pytest.mark.slow
def test_collect_over_a_three_node_cluster_stores_what_a_local_collect_stores(
    ray_cluster: Any, revos_train: Path, tmp_path: Path
) -> None:
    local = run(revos_train, tmp_path / "local")
    spread = run(revos_train, tmp_path / "ray", workers=3, ray_address=ray_cluster.address)
    assert (spread.groups_written, spread.rollouts, spread.failed) == (8, 16, [])
    assert spread.mean_reward == local.mean_reward and spread.status_counts == local.status_counts
    assert collected(tmp_path / "ray") == collected(tmp_path / "local")  # same keys, rewards, seeds, statuses
    assert {k.split("/", 2)[2]: v[0][0] for k, v in collected(tmp_path / "ray").items()} == EXPECTED


@pytest.mark.ray_cluster
@pytest.mark.slow
def test_a_worker_node_removed_mid_collect_leaves_every_group_stored_exactly_once(
    ray_cluster: Any, revos_train: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Groups lost with the node are rolled out again by the surviving actors (the driver's doing, not Ray's)."""
    local = run(revos_train, tmp_path / "local")
    removed: list[str] = []

    def lose_a_node(key: str, group: list[Any]) -> None:
        if not removed:
            victim = next(iter(ray_cluster.worker_nodes))
            removed.append(victim.node_id)
            ray_cluster.remove_node(victim, allow_graceful=False)

    slow = {"delay_s": 0.3}  # each rollout waits on its policy, so groups are in flight when the node goes

    def policy() -> synth.QueryBoxPolicy:
        return synth.QueryBoxPolicy(**slow)

    with caplog.at_level(logging.WARNING, logger="revseg.evals.workers"):
        items = benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "ray" / "frames")
        report = collect(
            items,
            policy,
            tmp_path / "ray",
            group_size=2,
            settings=SETTINGS,
            seed=1,
            workers=3,
            ray_address=ray_cluster.address,
            on_group=lose_a_node,
        )
    assert removed and "lost a Ray worker" in caplog.text
    assert (report.groups_written, report.failed) == (8, [])
    records = list(TrajectoryStore(tmp_path / "ray"))
    assert len(records) == 16 and len({(r.query_id, r.sampling.seed) for r in records}) == 16  # none twice
    assert collected(tmp_path / "ray") == collected(tmp_path / "local") and local.groups_written == 8


def test_ground_truth_travels_as_the_boxes_of_the_sampled_frames_only() -> None:
    truth = SampledBoxes({0: (1.0, 2.0, 3.0, 4.0), 5: None})
    assert truth() is truth and truth.box(0) == (1.0, 2.0, 3.0, 4.0) and truth.box(5) is None
    with pytest.raises(InputError, match="no ground truth was shipped for frame 3"):
        truth.box(3)


@pytest.mark.ray_cluster
@pytest.mark.slow
def test_revseg_collect_with_ray_against_an_openai_server_stores_what_the_local_command_stores(
    ray_cluster: Any, revos_train: Path, tmp_path: Path
) -> None:
    from revseg.testing.benchmarks import query_box_responder
    from revseg.testing.chat_server import chat_server
    from tests.rl.test_rl_cli import cli

    common = ["collect", "--dataset", "revos", "--split", "train", "--data-root", str(revos_train), "-q",
              "--frames", "4", "--group-size", "2", "--seed", "7", "--policy", "openai:q"]  # fmt: skip
    with chat_server(query_box_responder()) as url:
        code, out = cli(*common, "--base-url", url, "--out", str(tmp_path / "local"))
        assert code == 0, out
        code, out = cli(*common, "--base-url", url, "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address,
                        "--workers", "3")  # fmt: skip
    assert code == 0 and "wrote 8 groups (16 rollouts" in out and "0 failed" in out, out
    assert collected(tmp_path / "ray") == collected(tmp_path / "local")
    assert {k.split("/", 2)[2]: v[0][0] for k, v in collected(tmp_path / "ray").items()} == EXPECTED


@pytest.mark.ray_cluster
@pytest.mark.slow
def test_a_sampling_model_on_three_nodes_draws_the_same_tokens_as_locally_with_a_fixed_seed(
    ray_cluster: Any, revos_train: Path, tiny_qwen25_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    """The tiny Qwen2.5-VL samples at temperature 1 on each actor: per-rollout seeds make the store reproducible."""
    from functools import partial

    from revseg.policies import build_policy
    from revseg.settings import SamplingParams

    factory = partial(build_policy, f"hf:{tiny_qwen25_dir}", device="cpu")
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=8)

    def tokens(store: Path) -> dict[str, list[tuple[int | None, list[list[int] | None], float]]]:
        """Per item: each rollout's seed, its turns' sampled token ids and its reward."""
        drawn: dict[str, list[tuple[int | None, list[list[int] | None], float]]] = {}
        for t in TrajectoryStore(store):
            rollout = (t.sampling.seed, [turn.token_ids for turn in t.turns], (t.rewards or {})["total"])
            drawn.setdefault(t.query_id or "", []).append(rollout)
        return {key: sorted(rollouts, key=repr) for key, rollouts in drawn.items()}

    options: dict[str, Any] = {"group_size": 2, "settings": SETTINGS, "sampling": sampling, "seed": 3, "limit": 3}
    items = list(benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "frames"))
    collect(items, factory(), tmp_path / "local", **options)
    collect(items, factory, tmp_path / "ray", workers=3, ray_address=ray_cluster.address, **options)
    local = tokens(tmp_path / "local")
    assert len(local) == 3 and all(turns[0] for group in local.values() for _, turns, _ in group)
    assert tokens(tmp_path / "ray") == local


def test_collect_over_ray_refuses_a_built_policy_before_starting_anything(revos_train: Path, tmp_path: Path) -> None:
    items = benchmark_items("revos", revos_train, "train", link_dir=tmp_path / "frames")
    with pytest.raises(InputError, match="policy spec string or a picklable factory"):
        collect(items, synth.QueryBoxPolicy(), tmp_path / "store", ray_address="local")
    assert not (tmp_path / "store").exists()
