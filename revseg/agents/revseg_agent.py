"""ReVSegAgent: the compiled chain plus backends, output folder and trajectory recording.

The graph is async: ``arun`` awaits one run, ``abatch`` keeps many in flight against one
policy endpoint, and ``run``/``batch`` are their blocking forms. With a checkpointer a run
is resumable by thread id, and with ``review=True`` it pauses for a person to accept or
correct the keyframe and the box (``resume``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from revseg.agents.batch import DEFAULT_CONCURRENCY, run_pool
from revseg.agents.request import RunRequest, SegmentationResult
from revseg.errors import InputError, OutputError, RevsegError, VideoError
from revseg.graphs import ChainContext, ChainInput, build_graph, trajectory_from_state
from revseg.graphs.nodes.review import apply_decision
from revseg.policies import DEFAULT_POLICY, Policy, build_policy
from revseg.settings import ChainSettings, SamplingParams
from revseg.tools.frame_cache import ResizedFrameCache
from revseg.tools.trackers import DEFAULT_TRACKER, build_tracker
from revseg.tools.trackers.base import Tracker
from revseg.trajectory import Status, Trajectory

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool
    from langgraph.graph.state import CompiledStateGraph

    from revseg.tools.frames import FrameReader


TRAJECTORY_FILE = "trajectory.json"
OVERLAY_FILE = "overlay.mp4"
REPORT_FILE = "report.html"
STREAM_MODES: list[Literal["updates", "values", "tasks"]] = ["updates", "values", "tasks"]
_T = TypeVar("_T")
CheckpointerSpec = Any  # a LangGraph saver, an SQLite file path, a postgresql:// URL, True (default file) or None


class ReVSegAgent:
    """Runs the ReVSeg chain on (video, query) pairs and records every run.

    ``policy`` and ``tracker`` are spec strings (``hf:...``, ``openai:...``, ``sam2:...``,
    ``"none"``) or ready backend objects; a langchain-core chat model (``ChatOpenAI(...)``)
    is accepted as the policy too. Backends are built once and reused across runs.

    ``checkpointer`` makes runs resumable by thread id: a LangGraph saver with async
    methods, a path to an SQLite file, a ``postgresql://`` URL (the ``postgres`` extra) or
    True for the default SQLite file (``$REVSEG_CHECKPOINTS``, else
    ``~/.cache/revseg/checkpoints.sqlite``). ``review=True`` pauses each run after
    select_frames and after ground for a person's decision (:meth:`resume`); it uses the
    default SQLite file when no checkpointer is given.

    Runs read frames through ``frame_cache`` (a fresh one by default), which keeps recent
    videos open: one run opens its video once, from the first check to the report, and
    queries on the same video share decoded frames. Pass one that has already probed
    the video (``frame_cache.probe(path)``) to check the input before the models load.
    """

    def __init__(
        self,
        policy: Policy | str | Any = DEFAULT_POLICY,
        tracker: Tracker | str | None = DEFAULT_TRACKER,
        *,
        settings: ChainSettings | None = None,
        sampling: SamplingParams | None = None,
        frame_backend: str = "auto",
        progress: bool = False,
        overlay: bool = True,
        report: bool = True,
        policy_options: dict[str, Any] | None = None,
        tracker_options: dict[str, Any] | None = None,
        checkpointer: CheckpointerSpec = None,
        review: bool = False,
        frame_cache: ResizedFrameCache | None = None,
    ) -> None:
        self.context = ChainContext(
            policy=as_policy(policy, **(policy_options or {})),
            tracker=build_tracker(tracker, **(tracker_options or {})) if isinstance(tracker, str) else tracker,
            settings=settings or ChainSettings(),
            sampling=sampling or SamplingParams(),
            frame_backend=frame_backend,
            progress=progress,
            frame_cache=ResizedFrameCache() if frame_cache is None else frame_cache,  # an empty cache is falsy
        )
        self.overlay = overlay
        self.report = report
        self.review = review
        self.checkpointer: CheckpointerSpec = True if review and checkpointer is None else checkpointer
        # One compiled graph when the saver is an object; a per-scope one for files and URLs
        # (their async connections belong to the event loop that opens them).
        saver = self.checkpointer if _is_saver(self.checkpointer) else None
        self.graph = build_graph(checkpointer=saver, review=review)

    def run(
        self,
        video: str | Path,
        query: str,
        out_dir: str | Path | None = None,
        *,
        query_id: str | None = None,
        group_id: str | None = None,
        thread_id: str | None = None,
        sampling: SamplingParams | None = None,
        on_step: Callable[[str, dict[str, Any]], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> SegmentationResult:
        """Segment the object ``query`` refers to in ``video``; write masks, trajectory, overlay and report.

        Without ``out_dir`` a fresh temporary folder is used. Bad input (a missing or
        undecodable video, an unwritable folder) raises a RevsegError; model answers that
        do not parse end the run with a failure status instead. ``on_start(node)`` and
        ``on_step(node, update)`` are called as each reasoning step starts and finishes.
        ``sampling`` overrides the agent's sampling parameters for this run only.
        The blocking form of :meth:`arun`.
        """
        return run_sync(
            self.arun(
                video,
                query,
                out_dir,
                query_id=query_id,
                group_id=group_id,
                thread_id=thread_id,
                sampling=sampling,
                on_step=on_step,
                on_start=on_start,
            )
        )

    async def arun(
        self,
        video: str | Path,
        query: str,
        out_dir: str | Path | None = None,
        *,
        query_id: str | None = None,
        group_id: str | None = None,
        thread_id: str | None = None,
        sampling: SamplingParams | None = None,
        on_step: Callable[[str, dict[str, Any]], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> SegmentationResult:
        """:meth:`run` without blocking: many calls can await their policy turns at once.

        With a checkpointer the run is saved under ``thread_id`` (a fresh one when not
        given, returned in the result); a run that pauses for review returns a result with
        status ``pending_review`` and the question in ``review``.
        """
        async with self._graph_scope() as graph:
            return await self._arun(
                graph, RunRequest(video, query, out_dir, query_id, group_id, sampling), thread_id, on_step, on_start
            )

    def resume(
        self,
        thread_id: str,
        decision: Any = None,
        *,
        query_id: str | None = None,
        group_id: str | None = None,
        on_step: Callable[[str, dict[str, Any]], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> SegmentationResult:
        """The blocking form of :meth:`aresume`."""
        return run_sync(
            self.aresume(thread_id, decision, query_id=query_id, group_id=group_id, on_step=on_step, on_start=on_start)
        )

    async def aresume(
        self,
        thread_id: str,
        decision: Any = None,
        *,
        query_id: str | None = None,
        group_id: str | None = None,
        on_step: Callable[[str, dict[str, Any]], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> SegmentationResult:
        """Continue the run saved under ``thread_id``, in this process or another one.

        A run paused for review needs ``decision``: ``{}`` accepts, ``{"frame_index": k}``
        or ``{"box": [x1, y1, x2, y2]}`` corrects (see ``revseg.graphs.nodes.review``). A run
        that was cut off (a crash) continues from its last finished step.
        """
        from langgraph.types import Command

        if self.checkpointer is None:
            raise InputError("resume needs an agent built with a checkpointer (the same one the run was saved in)")
        async with self._graph_scope() as graph:
            config = _thread_config(thread_id)
            snapshot = await graph.aget_state(config)
            if not snapshot.values:
                raise InputError(f"no run saved under thread id {thread_id!r}")
            values = snapshot.values
            inputs: Command[Any] | None = None
            if snapshot.interrupts:
                pending = snapshot.interrupts[0]
                stage = pending.value.get("stage", "keyframe")
                if decision is None:
                    raise InputError(f"run {thread_id!r} waits for a {stage} review: pass decision={{}} to accept")
                apply_decision(stage, values, decision)  # a bad decision fails here, before it is saved
                inputs = Command(resume={pending.id: decision})  # keyed by interrupt: {} is then a value
            request = RunRequest(values["video_path"], values["query"], values["out_dir"], query_id, group_id)
            return await self._stream(graph, inputs, request, Path(values["out_dir"]), thread_id, on_step, on_start)

    async def abatch(
        self,
        queries: Iterable[RunRequest | tuple[Any, ...]],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        out_dir: str | Path | None = None,
    ) -> list[SegmentationResult | RevsegError]:
        """Run many ``(video, query)`` pairs with at most ``concurrency`` in flight; results in input order.

        A query whose input is bad (a missing video) gets its RevsegError in place of a
        result; policy faults are results with status ``policy_error``. With ``out_dir``
        each query writes to ``out_dir/<query_id or index>``.
        """
        items = [RunRequest.coerce(q) for q in queries]
        outcomes: list[SegmentationResult | RevsegError | None] = [None] * len(items)
        async for index, _, outcome in self.abatch_as_completed(items, concurrency=concurrency, out_dir=out_dir):
            outcomes[index] = outcome
        assert all(o is not None for o in outcomes), "the pool yields every query once"
        return outcomes  # type: ignore[return-value]

    def batch(
        self,
        queries: Iterable[RunRequest | tuple[Any, ...]],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        out_dir: str | Path | None = None,
    ) -> list[SegmentationResult | RevsegError]:
        """The blocking form of :meth:`abatch`."""
        return run_sync(self.abatch(queries, concurrency=concurrency, out_dir=out_dir))

    async def abatch_as_completed(
        self,
        queries: Iterable[RunRequest | tuple[Any, ...]],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        out_dir: str | Path | None = None,
    ) -> AsyncIterator[tuple[int, RunRequest, SegmentationResult | RevsegError]]:
        """Like :meth:`abatch`, yielding ``(index, query, outcome)`` as each query finishes."""
        root = Path(out_dir) if out_dir is not None else None

        def placed() -> Iterable[RunRequest]:
            for index, item in enumerate(queries):
                request = RunRequest.coerce(item)
                if request.out_dir is None and root is not None:
                    request = dataclasses.replace(request, out_dir=root / (request.query_id or f"{index:05d}"))
                yield request

        async with self._graph_scope() as graph:
            async for item in run_pool(placed(), lambda q: self._arun(graph, q, None, None, None), concurrency):
                yield item

    def as_tool(self, *, name: str = "segment_video_object", out_dir: str | Path | None = None) -> BaseTool:
        """This agent as a LangChain tool a tool-calling model can call (see ``revseg.agents.tool``)."""
        from revseg.agents.tool import segment_tool

        return segment_tool(self, name=name, out_dir=out_dir)

    # ---- internals

    async def _arun(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        request: RunRequest,
        thread_id: str | None,
        on_step: Callable[[str, dict[str, Any]], None] | None,
        on_start: Callable[[str], None] | None,
    ) -> SegmentationResult:
        # Bad input fails before the output folder is made; the reader stays open for the run.
        video = await asyncio.to_thread(self.context.frame_cache.probe, request.video, self.context.frame_backend)
        out = Path(request.out_dir) if request.out_dir is not None else Path(tempfile.mkdtemp(prefix="revseg-"))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from exc
        if thread_id is None and self.checkpointer is not None:
            thread_id = uuid.uuid4().hex
        inputs = ChainInput(video_path=video.path, query=request.query, out_dir=str(out))
        return await self._stream(graph, inputs, request, out, thread_id, on_step, on_start)

    async def _stream(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        inputs: Any,
        request: RunRequest,
        out: Path,
        thread_id: str | None,
        on_step: Callable[[str, dict[str, Any]], None] | None,
        on_start: Callable[[str], None] | None,
    ) -> SegmentationResult:
        context = self.context  # shared by every run, frame cache included: queries on one video decode it once
        if request.sampling is not None:  # a per-run override; backends and frame cache stay shared
            context = dataclasses.replace(context, sampling=request.sampling)
        config = _thread_config(thread_id) if thread_id is not None else None
        state: dict[str, Any] = {}
        async for part in graph.astream(inputs, config, context=context, stream_mode=STREAM_MODES, version="v2"):
            if part["type"] == "values":
                state = dict(part["data"])
            elif part["type"] == "updates" and on_step is not None:
                for node, update in part["data"].items():
                    if not node.startswith("__"):
                        on_step(node, update or {})
            elif part["type"] == "tasks" and on_start is not None and "input" in part["data"]:
                on_start(part["data"]["name"])
        ids = {"query_id": request.query_id, "group_id": request.group_id}
        if config is not None:
            snapshot = await graph.aget_state(config)
            if snapshot.interrupts:
                trajectory = trajectory_from_state(dict(snapshot.values), context, **ids)
                question = snapshot.interrupts[0].value
                trajectory.status = Status.PENDING_REVIEW
                trajectory.reason = f"waiting for a {question.get('stage')} review of thread {thread_id}"
                return SegmentationResult(trajectory=trajectory, out_dir=out, thread_id=thread_id, review=question)
        trajectory = trajectory_from_state(state, context, **ids)
        await asyncio.to_thread(self._finish, trajectory, out)
        return SegmentationResult(trajectory=trajectory, out_dir=out, thread_id=thread_id)

    def _finish(self, trajectory: Trajectory, out: Path) -> None:
        """Write what follows the graph (overlay, report, the trajectory itself); blocking.

        Both read the video through the reader the run opened, borrowed from the frame cache.
        A video gone since the run fails the overlay; the report is still written, saying so.
        """
        overlay = self.overlay and "masks_json" in trajectory.outputs
        with contextlib.ExitStack() as stack:
            reader: FrameReader | None = None
            if overlay or self.report:
                try:
                    video = self.context.frame_cache.borrow(trajectory.video.path, self.context.frame_backend)
                    reader = stack.enter_context(video)
                except VideoError:
                    if overlay:
                        raise
            if overlay:
                assert reader is not None
                start = perf_counter()
                trajectory.outputs["overlay"] = str(self._write_overlay(trajectory, out, reader))
                trajectory.timings["overlay"] = perf_counter() - start
            trajectory.outputs["trajectory"] = str(out / TRAJECTORY_FILE)
            if self.report:
                start = perf_counter()
                trajectory.outputs["report"] = str(self._write_report(trajectory, out, reader))
                trajectory.timings["report"] = perf_counter() - start
        trajectory.save(out / TRAJECTORY_FILE)

    @contextlib.asynccontextmanager
    async def _graph_scope(self) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
        """The compiled graph, with a checkpointer opened on this event loop when one is configured by path."""
        if self.checkpointer is None or _is_saver(self.checkpointer):
            yield self.graph
            return
        async with open_checkpointer(self.checkpointer) as saver:
            yield build_graph(checkpointer=saver, review=self.review)

    def _write_report(self, trajectory: Trajectory, out: Path, reader: FrameReader | None) -> Path:
        from revseg.reports.page import FrameImages, ReportOptions, write_report

        options = ReportOptions(frame_backend=self.context.frame_backend)
        frames = FrameImages(trajectory, options, reader=reader)
        try:
            return write_report(trajectory, out / REPORT_FILE, base_dir=out, options=options, frames=frames)
        finally:
            frames.close()

    def _write_overlay(self, trajectory: Trajectory, out: Path, reader: FrameReader) -> Path:
        from revseg.tools.render import write_overlay

        target = trajectory.targets[0] if trajectory.targets else None
        # every object grounded on that keyframe gets its box drawn, not only the first (DESIGN.md 1.7)
        boxes = [t.box for t in trajectory.targets if target and t.frame_index == target.frame_index and t.box]
        return write_overlay(
            reader,
            trajectory.outputs["masks_json"],
            out / OVERLAY_FILE,
            box=boxes or None,
            keyframe_index=target.frame_index if target else None,
        )


def as_policy(policy: Policy | str | Any, **options: Any) -> Policy:
    """A policy from a spec string, a Policy, or a langchain-core chat model (wrapped)."""
    if isinstance(policy, str):
        return build_policy(policy, **options)
    from langchain_core.language_models import BaseChatModel

    if isinstance(policy, BaseChatModel):
        from revseg.policies.langchain import LangChainPolicy

        return LangChainPolicy(policy, **options)
    if not isinstance(policy, Policy):
        raise InputError(
            f"policy must be a spec string, a revseg Policy or a langchain chat model, not {type(policy).__name__}"
        )
    return policy


def default_checkpoint_path() -> Path:
    """Where ``checkpointer=True`` keeps runs: ``$REVSEG_CHECKPOINTS`` or ``~/.cache/revseg/checkpoints.sqlite``."""
    configured = os.environ.get("REVSEG_CHECKPOINTS")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "revseg" / "checkpoints.sqlite"


@contextlib.asynccontextmanager
async def open_checkpointer(spec: CheckpointerSpec) -> AsyncIterator[Any]:
    """An async LangGraph saver for ``spec`` (SQLite path, ``postgresql://`` URL or True), closed afterwards."""
    if _is_saver(spec):
        yield spec
        return
    target = str(default_checkpoint_path() if spec is True else spec)
    if target.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise InputError(
                "a postgresql:// checkpointer needs the postgres extra: pip install 'revseg[postgres]'"
            ) from exc
        async with AsyncPostgresSaver.from_conn_string(target) as saver:
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = Path(target).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the checkpoint folder {path.parent}: {exc.strerror or exc}") from exc
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        yield saver


SERVED_CHECKPOINTER_ENV = "REVSEG_CHECKPOINTER"


def served_checkpointer() -> contextlib.AbstractAsyncContextManager[Any]:
    """The saver of a LangGraph server (``langgraph dev`` included) whose langgraph.json names this function.

    langgraph-api (0.16 here) replaces its own persistence with a custom checkpointer when the
    config has ``"checkpointer": {"path": "revseg.agents.revseg_agent.served_checkpointer"}``:
    it calls this and enters the context it returns for the server's lifetime. The saver is
    :func:`open_checkpointer`'s for ``$REVSEG_CHECKPOINTER`` (a ``postgresql://`` URL or an
    SQLite path), so served threads live in the same database as the agents'.
    """
    target = os.environ.get(SERVED_CHECKPOINTER_ENV)
    if not target:
        raise InputError(f"set {SERVED_CHECKPOINTER_ENV} to a postgresql:// URL or an SQLite path for the server")
    return open_checkpointer(target)


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from blocking code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # a notebook's loop: run beside it
        return pool.submit(asyncio.run, coroutine).result()


def _is_saver(spec: Any) -> bool:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    return isinstance(spec, BaseCheckpointSaver)


def _thread_config(thread_id: str) -> Any:
    return {"configurable": {"thread_id": thread_id}}


def segment(
    video: str | Path,
    query: str,
    out_dir: str | Path | None = None,
    *,
    policy: Policy | str = DEFAULT_POLICY,
    tracker: Tracker | str | None = DEFAULT_TRACKER,
    **options: Any,
) -> SegmentationResult:
    """One-shot convenience: build an agent and run it once (backends are not reused)."""
    return ReVSegAgent(policy, tracker, **options).run(video, query, out_dir)
