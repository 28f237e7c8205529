"""Node ``ground``: turn 2, the policy boxes each target on its keyframe at high resolution."""

from __future__ import annotations

from time import perf_counter
from typing import Any

from langgraph.runtime import Runtime

from revseg.errors import PolicyError
from revseg.graphs.conversation import ground_messages, user_message
from revseg.graphs.frames import ahistory, aresized_frames
from revseg.graphs.looks import after_rejection
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.graphs.turns import ask_policy, record_turn
from revseg.policies.parsing import parse_box_answer
from revseg.policies.prompts import get_prompt_set
from revseg.tools.boxes import is_degenerate, rescale_box
from revseg.trajectory import Status, TurnRecord, VideoRef


async def ground(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Turn 2 (below); in the look_again program a failed re-grounding keeps the rejected attempt's masks."""
    update = await ground_targets(state, runtime)
    if chain_context(runtime).settings.program == "look_again":
        return after_rejection(state, update)
    return update


async def ground_targets(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Ask for one box per target, continuing turn 1's conversation (prompt P2).

    Each target gets its own second turn on its own keyframe (in the look_again program each
    continues the whole conversation so far, earlier targets' turns included). The run fails at ground
    when any target's box does not parse or collapses to zero area after clipping:
    the format reward treats turn 2 as all-or-nothing, and so do we.
    """
    ctx = chain_context(runtime)
    video = VideoRef.model_validate(state["video"])
    prompts = get_prompt_set(ctx.settings.prompt_set)
    first = state["turns"][0]
    history = await aresized_frames(ctx, state["video_path"], state["sampled_indices"], ctx.settings.frame_size)
    size = ctx.settings.keyframe_size
    seen = ctx.policy.seen_size(*size)
    turns = list(state["turns"])
    targets = [dict(t) for t in state["targets"]]
    look_again = ctx.settings.program == "look_again"
    elapsed = 0.0
    for number, target in enumerate(targets):
        keyframe = (await aresized_frames(ctx, state["video_path"], [target["frame_index"]], size))[0]
        prompt = prompts.render_ground(target["description"])
        turn = TurnRecord(
            name="ground", prompt=prompt, image_frames=[target["frame_index"]], image_size=size, seen_size=seen
        )
        turn.target = number
        if look_again:  # one conversation: every turn so far is this turn's history
            turn.attempt = len(state.get("attempts", []))
        start = perf_counter()
        try:
            if look_again:
                messages = [*await ahistory(ctx, state["video_path"], turns), user_message([keyframe], prompt)]
            else:
                messages = ground_messages(
                    history, first["prompt"], first["response"], keyframe, prompt, first.get("token_ids")
                )
            generation = await ask_policy(ctx.policy, messages, ctx.sampling)
        except PolicyError as exc:
            turn.duration_s = perf_counter() - start
            turns.append(turn.model_dump(mode="json"))
            return _end(turns, targets, Status.POLICY_ERROR, str(exc), elapsed + turn.duration_s)
        turn = record_turn(turn, generation, perf_counter() - start)
        elapsed += turn.duration_s
        answer = parse_box_answer(generation.text)
        turn = turn.model_copy(
            update={"parse_ok": answer.ok, "parse_reason": answer.reason, "parsed": answer.to_dict()}
        )
        turns.append(turn.model_dump(mode="json"))
        if not answer.ok or answer.first is None:
            return _end(turns, targets, Status.FAILED_GROUND, f"turn 2 (target {number}): {answer.reason}", elapsed)
        box = rescale_box(
            answer.first.coords,
            convention=ctx.policy.info.box_convention,
            seen_size=seen,
            original_size=(video.width, video.height),
        )
        target.update(raw_box=list(answer.first.coords), box=list(box), label=answer.first.label)
        if is_degenerate(box):
            reason = f"turn 2 (target {number}): box {answer.first.coords} has no area inside the frame"
            return _end(turns, targets, Status.FAILED_GROUND, reason, elapsed)
    return {"turns": turns, "targets": targets, "timings": {"ground": elapsed}}


def _end(turns: list[Any], targets: list[Any], status: Status, reason: str, elapsed: float) -> dict[str, Any]:
    return {
        "turns": turns,
        "targets": targets,
        "status": status.value,
        "reason": reason,
        "timings": {"ground": elapsed},
    }
