"""Node ``verify`` (look_again): the policy sees the tracked mask and accepts or rejects it.

The mask is drawn in red on ``ChainSettings.verify_frames`` frames spread over the video,
then on the keyframe, all at the turn-1 frame size. Every verdict becomes an attempt in
the record. A rejection moves the attempt's masks to their own folder (``masks_attempt<N>``,
so a re-track cannot overwrite them) and, budget permitting, goes on to ``reselect``; an
answer that does not parse leaves the masks standing, unverified.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from revseg.errors import OutputError
from revseg.graphs.looks import current_view, turns_left
from revseg.graphs.state import ChainContext, ChainState, chain_context
from revseg.graphs.turns import ask_next_turn
from revseg.policies.actions import parse_verdict
from revseg.policies.prompts import get_look_again_prompts
from revseg.tools.frames import sample_indices
from revseg.trajectory import Attempt, Status, Target, TurnRecord, VideoRef


async def verify(state: ChainState, runtime: Runtime[ChainContext]) -> dict[str, Any]:
    """Ask for a verdict on the current attempt's masks; set ``action`` to ``reselect`` or ``end``."""
    ctx = chain_context(runtime)
    settings = ctx.settings
    video = VideoRef.model_validate(state["video"])
    targets = state["targets"]
    masks_json = state["outputs"]["masks_json"]
    indices = [*sample_indices(video.num_frames, settings.verify_frames), targets[0]["frame_index"]]
    description = "; ".join(t["description"] for t in targets)
    prompt = get_look_again_prompts(settings.prompt_set).render_verify(state["query"], description, len(indices) - 1)
    number = len(state.get("attempts", []))
    turn = TurnRecord(
        name="verify",
        prompt=prompt,
        image_frames=indices,
        image_size=settings.frame_size,
        seen_size=ctx.policy.seen_size(*settings.frame_size),
        overlay=masks_json,
        attempt=number,
    )
    update = await ask_next_turn(ctx, state, turn, "verify")
    if update.get("status") == Status.POLICY_ERROR.value:
        return update
    turns = update["turns"]
    last = turns[-1]
    verdict = parse_verdict(last.get("response") or "")
    last.update(parse_ok=verdict.ok, parse_reason=verdict.reason, parsed=verdict.to_dict())
    attempt = Attempt(
        targets=[Target.model_validate(t) for t in targets],
        view=current_view(turns),
        masks=masks_json,
        verdict=verdict.name,
        why=verdict.why,
    )
    update = {**update, "turns": turns, "action": "end"}
    if not verdict.ok:
        reason = f"turn {len(turns)} (verify): {verdict.reason}; the masks stand unverified"
        return {**update, "attempts": _with(state, attempt), "reason": reason}
    if verdict.accept:
        return {**update, "attempts": _with(state, attempt)}
    archived = str(archive_masks(Path(masks_json), number))
    last["overlay"] = archived
    attempt = attempt.model_copy(update={"masks": archived})
    outputs = {**state["outputs"], "masks": str(Path(archived).parent), "masks_json": archived}
    update |= {"attempts": _with(state, attempt), "outputs": outputs}
    if turns_left(turns, settings.max_turns) < 2:
        why = f"verify rejected the mask and the budget of {settings.max_turns} turns leaves no room to re-select"
        return update | {"reason": why + "; the rejected attempt's masks are kept"}
    return update | {"action": "reselect"}


def archive_masks(masks_json: Path, number: int) -> Path:
    """Move a rejected attempt's mask folder to ``masks_attempt<number>`` beside it; the new masks.json path."""
    folder = masks_json.parent
    target = folder.with_name(f"{folder.name}_attempt{number}")
    try:
        if target.exists():  # a resumed run re-doing this step
            shutil.rmtree(target)
        folder.rename(target)
    except OSError as exc:
        raise OutputError(f"cannot keep the rejected masks of {folder} in {target}: {exc.strerror or exc}") from exc
    return target / masks_json.name


def _with(state: ChainState, attempt: Attempt) -> list[dict[str, Any]]:
    return [*state.get("attempts", []), attempt.model_dump(mode="json")]
