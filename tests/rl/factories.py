"""Hand-built trajectories for reward, store and loss tests (no model involved)."""

from __future__ import annotations

from typing import Any

from revseg.settings import ChainSettings, SamplingParams
from revseg.trajectory import PolicyInfo, Status, Target, Trajectory, TurnRecord, VideoRef

STRICT_T1 = "<think>the one in front</think> <answer>[{'frame_idx': {k}, 'object description': 'red car'}]</answer>"
STRICT_T2 = '[{"bbox_2d": [10, 20, 110, 220], "label": "red car"}]'


def turn1(k: int = 0, text: str | None = None) -> str:
    """A strict turn-1 answer naming sampled frame ``k`` (or ``text`` verbatim)."""
    return text if text is not None else STRICT_T1.replace("{k}", str(k))


def make_trajectory(
    *,
    sampled: list[int] | None = None,
    t1: str | None = None,
    t2: list[str] | None = None,
    targets: list[dict[str, Any]] | None = None,
    status: Status = Status.OK,
    policy: str = "hf:/models/tiny",
    group_id: str | None = None,
    token_ids: list[list[int]] | None = None,
    logprobs: list[list[float]] | None = None,
    rewards: dict[str, float] | None = None,
) -> Trajectory:
    """A trajectory over a 100-frame 640x360 video with the given answers and targets."""
    sampled = sampled if sampled is not None else [0, 33, 66, 99]
    turns = []
    if t1 is not None:
        first = TurnRecord(name="interpret", prompt="P1", image_frames=sampled, image_size=(448, 448), response=t1)
        turns.append(first)
    for i, text in enumerate(t2 or []):
        frame = (targets or [{"frame_index": sampled[0]}])[min(i, len(targets or [1]) - 1)]["frame_index"]
        turns.append(
            TurnRecord(
                name="ground",
                prompt="P2",
                image_frames=[frame],
                image_size=(840, 840),
                response=text,
                parse_ok=True,
                target=i,
            )
        )
    for i, turn in enumerate(turns):
        if token_ids is not None and i < len(token_ids):
            turn.token_ids = token_ids[i]
        if logprobs is not None and i < len(logprobs):
            turn.logprobs = logprobs[i]
    return Trajectory(
        query="the red car",
        video=VideoRef(path="/data/clip.mp4", num_frames=100, width=640, height=360, backend="pyav"),
        policy=PolicyInfo(spec=policy, backend="hf", model=policy.partition(":")[2]),
        sampling=SamplingParams(temperature=1.0),
        settings=ChainSettings(num_frames=len(sampled)),
        sampled_indices=sampled,
        targets=[Target(description="red car", **t) for t in (targets or [])],
        turns=turns,
        status=status,
        group_id=group_id,
        rewards=rewards,
    )
