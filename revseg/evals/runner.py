"""Run a benchmark with the agent, resumably, then score it: :func:`evaluate` and :func:`score`.

An evaluation's output folder::

    run.json          benchmark, split, data root and agent configuration (checked on --resume)
    results.jsonl     one completion record per finished sample, appended as each finishes
    predictions/<video>/<expression>/<frame>.png + masks.json     the standard layout
    runs/<video>/<expression>/trajectory.json + masks.json         each run's record and per-object RLE
        + masks_attempt<N>.json                                    look_again: each rejected attempt's masks
    report.md, report.json                                         written at the end
    submission.zip                                                 for splits scored by a server

A sample is finished when its record is in ``results.jsonl``; the record is appended (one
``write`` of one line, flushed and fsynced) only after the sample's prediction folder has
been renamed into place complete. So after a crash, Ctrl-C or SIGKILL, ``--resume`` keeps
every recorded sample, clears whatever a half-finished sample left and runs the rest:
nothing finished is redone, nothing is lost, no prediction is duplicated. A torn last line
(the process killed inside ``write``) is ignored and its sample redone. One evaluation at a
time may write to a folder (an exclusive lock).
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from revseg.errors import OutputError
from revseg.evals.base import Benchmark, Sample, inside, natural_key
from revseg.evals.predictions import (
    PREDICTIONS_DIR,
    SUBMISSION_ZIP,
    export_submission,
    remove_prediction,
    write_prediction,
)
from revseg.evals.report import Report, Table
from revseg.evals.scoring import score_samples
from revseg.evals.shards import Shard, in_shard
from revseg.evals.workers import (
    ERROR_STATUS,
    AgentFactory,
    Job,
    JobResult,
    describe_agent,
    inline_results,
    process_results,
    ray_results,
)
from revseg.jsonl import RESULTS_FILE, AppendLog
from revseg.trajectory import Status

RUN_JSON = "run.json"
RESULTS_JSONL = RESULTS_FILE
RUNS_DIR = "runs"
LOCK_FILE = ".lock"
RETRYABLE = frozenset({ERROR_STATUS, Status.POLICY_ERROR.value})
"""Statuses ``retry_errors`` runs again: failures of the machinery, not answers of the model."""

ResultCallback = Callable[[int, int, dict[str, Any]], None]


class RunStore:
    """An evaluation's output folder: the lock, ``run.json``, ``results.jsonl``, predictions and runs."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.predictions = self.out / PREDICTIONS_DIR
        self.runs = self.out / RUNS_DIR
        self.results_path = self.out / RESULTS_JSONL
        self._results = AppendLog(self.results_path)
        self._lock: IO[str] | None = None
        self._config: Mapping[str, Any] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    def open(self, config: Mapping[str, Any], *, resume: bool) -> dict[str, dict[str, Any]]:
        """Lock the folder, check or write ``run.json``; return the completion records so far."""
        self._config = config
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock = (self.out / LOCK_FILE).open("a+")
        except OSError as exc:
            raise OutputError(f"cannot create the evaluation folder {self.out}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            self._lock = None
            raise OutputError(
                f"another evaluation is writing to {self.out}; wait for it or choose another --out"
            ) from exc
        run_json = self.out / RUN_JSON
        records = self.records()
        previous: dict[str, Any] = {}
        if run_json.is_file():
            previous = json.loads(run_json.read_text())
            if not resume and (records or (self.predictions.exists() and any(self.predictions.iterdir()))):
                self.close()
                raise OutputError(
                    f"{self.out} already holds an evaluation ({len(records)} samples finished): pass --resume to "
                    "continue it, or choose another --out"
                )
            if resume:
                differences = [k for k in config if previous.get(k) != config[k]]
                if differences:
                    self.close()
                    raise OutputError(
                        f"{self.out} was written with a different {', '.join(differences)}; resume with the same "
                        "benchmark, split, data root and agent options, or choose another --out"
                    )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        stamps = (
            {"created_at": previous.get("created_at", now), "resumed_at": now}
            if resume and run_json.is_file()
            else {"created_at": now}
        )
        self._write_json(run_json, {**config, **stamps})
        return records

    def close(self) -> None:
        """Release the lock."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- records -------------------------------------------------------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """Completion records by sample key (the last record of a key wins); torn lines are ignored."""
        return {r["key"]: r for _, r in self._results.read() if isinstance(r, dict) and isinstance(r.get("key"), str)}

    def clear(self, sample: Sample) -> None:
        """Remove whatever an unfinished attempt at a sample left behind."""
        remove_prediction(inside(self.predictions, sample.video, sample.expression))
        run = inside(self.runs, sample.video, sample.expression)
        if run.is_dir():
            shutil.rmtree(run, ignore_errors=True)

    def record(self, sample: Sample, result: JobResult) -> dict[str, Any]:
        """Write a finished sample: run record and masks, predictions, then its completion line."""
        run_dir = inside(self.runs, sample.video, sample.expression)
        pred_dir = inside(self.predictions, sample.video, sample.expression)
        if result.masks is None and result.status in (Status.OK.value, Status.NO_TARGET.value):
            result.status, result.reason = ERROR_STATUS, "the run wrote no masks (was the tracker 'none'?)"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {run_dir}: {exc.strerror or exc}") from exc
        if result.masks is not None:
            self._write_json(run_dir / "masks.json", result.masks)
            write_prediction(pred_dir, result.masks, result.frame_names)
        if result.trajectory is not None:
            self._save_trajectory(result, run_dir, pred_dir if result.masks is not None else None, sample.key)
        record = {
            "key": sample.key,
            "video": sample.video,
            "expression": sample.expression,
            "subset": sample.subset,
            "status": result.status,
            "reason": result.reason,
            "frames": len(result.frame_names),
            "seconds": round(result.seconds, 3),
            "worker": result.worker,
            **({"node": result.node} if result.node else {}),
        }
        self._append(record)
        return record

    def _save_trajectory(self, result: JobResult, run_dir: Path, pred_dir: Path | None, key: str) -> None:
        """Save the record with its paths pointing into ``run_dir``, not the worker's deleted scratch folder.

        The masks verify saw (look_again) are kept beside it: the final ones are ``masks.json``,
        a rejected attempt's ``<its folder's name>.json``; so the record can be re-scored later.
        """
        from revseg.trajectory import Trajectory

        trajectory = Trajectory.model_validate_json(result.trajectory or "")
        trajectory.dataset = {k: self._config.get(k) for k in ("benchmark", "version", "split")} | {"sample": key}
        moved: dict[str, str] = {}
        if pred_dir is not None and "masks_json" in trajectory.outputs:
            moved[trajectory.outputs["masks_json"]] = str(run_dir / "masks.json")
        for number, (path, masks) in enumerate(result.verified_masks.items()):
            name = Path(path).parent.name
            file = run_dir / f"{name if name.startswith('masks_') else f'masks_{number}'}.json"
            self._write_json(file, masks)
            moved[path] = str(file)
        for turn in trajectory.turns:
            if turn.overlay:
                turn.overlay = moved.get(turn.overlay)
        for attempt in trajectory.attempts:
            if attempt.masks:
                attempt.masks = moved.get(attempt.masks)
        outputs = {"trajectory": str(run_dir / "trajectory.json")}
        if pred_dir is not None:
            outputs |= {"masks_json": str(run_dir / "masks.json"), "predictions": str(pred_dir)}
        trajectory.outputs = outputs
        trajectory.save(run_dir / "trajectory.json")

    def _append(self, record: Mapping[str, Any]) -> None:
        """One completion line, fsynced; a torn tail left by a crash is cut off first (its sample reruns)."""
        self._results.append_json(record)

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(
                json.dumps(data, separators=(",", ":")) if path.name != RUN_JSON else json.dumps(data, indent=1)
            )
            tmp.replace(path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def job_for(sample: Sample) -> Job:
    """The job of a sample: its folder as is when the folder holds exactly its frames, else the listed frames."""
    folder = sample.frames_dir
    try:
        present = sorted(
            (p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name[0] != "."),
            key=natural_key,
        )
    except OSError:
        present = []
    exact = present == list(sample.frame_files)
    return Job(sample.key, str(folder), None if exact else sample.frame_files, sample.query)


def evaluate(
    benchmark: Benchmark,
    out_dir: str | Path,
    agent: AgentFactory,
    *,
    workers: int = 1,
    limit: int | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    ray_address: str | None = None,
    concurrency: int = 1,
    score_workers: int = 1,
    worker_threads: int | None = None,
    on_result: ResultCallback | None = None,
    shard: Shard | None = None,
) -> Report:
    """Run the agent on the benchmark's samples, writing predictions as they finish, then report.

    ``limit`` keeps the first K samples (sorted by video and expression). ``workers`` is the
    number of agents (local processes, or Ray actors with ``ray_address``), each running
    ``concurrency`` samples at once on its event loop (policy turns overlap: the way to use
    an API or vLLM policy; one process with ``concurrency`` 16 holds one tracker). With
    ``resume``, samples recorded in ``results.jsonl`` are not run again (``retry_errors``
    reruns those that ended in an exception or a policy error). ``on_result(done, total,
    record)`` is called after each sample is recorded. ``worker_threads`` caps each worker
    process's CPU threads (see :func:`~revseg.evals.workers.process_results`). Splits with
    local ground truth are scored; server splits get ``submission.zip``. With ``shard``
    only that shard's samples run and are reported (:mod:`revseg.evals.shards`;
    ``merge_eval_runs`` joins the shards' folders). Returns the
    report, also written to ``report.md`` and ``report.json``.
    """
    samples = benchmark.samples()
    if limit is not None:
        samples = samples[:limit]
    samples = list(in_shard(samples, shard, lambda s: s.key))
    config = {
        "benchmark": benchmark.name,
        "split": benchmark.split,
        "data_root": str(benchmark.root.resolve()),
        "agent": describe_agent(agent),
        **({"shard": str(shard)} if shard is not None else {}),
    }
    if benchmark.version is not None:
        config["version"] = benchmark.version
    with RunStore(out_dir) as store:
        records = store.open(config, resume=resume)
        done = {
            key
            for key, record in records.items()
            if not (retry_errors and record.get("status") in RETRYABLE)
            and (record.get("status") in _NO_MASKS or (store.predictions / key / "masks.json").is_file())
        }
        todo = [s for s in samples if s.key not in done]
        for sample in todo:
            store.clear(sample)
        by_key = {s.key: s for s in todo}
        total, finished = len(samples), len(samples) - len(todo)
        jobs = (job_for(s) for s in todo)
        for result in _results(agent, jobs, workers, concurrency, ray_address, worker_threads):
            record = store.record(by_key[result.key], result)
            finished += 1
            if on_result is not None:
                on_result(finished, total, record)
        records = store.records()
    report = _report(benchmark, samples, store.predictions, records, score_workers, Path(out_dir))
    report.run.update({"out": str(Path(out_dir).resolve()), **config})
    report.save(out_dir)
    return report


_NO_MASKS = frozenset(
    {
        Status.FAILED_SELECT_FRAMES.value,
        Status.FAILED_GROUND.value,
        Status.POLICY_ERROR.value,
        Status.TRACKER_ERROR.value,
        ERROR_STATUS,
    }
)
"""Statuses whose sample legitimately has no prediction folder."""


def _results(
    agent: AgentFactory,
    jobs: Iterator[Job],
    workers: int,
    concurrency: int,
    ray_address: str | None,
    threads: int | None,
) -> Iterator[JobResult]:
    if ray_address is not None:
        return ray_results(agent, jobs, max(workers, 1), ray_address, concurrency=concurrency)
    if workers > 1:
        return process_results(agent, jobs, workers, concurrency=concurrency, threads=threads)
    return inline_results(agent, jobs, concurrency)


def score(
    benchmark: Benchmark,
    predictions: str | Path,
    out_dir: str | Path | None = None,
    *,
    workers: int = 1,
) -> Report:
    """Score existing predictions (no models): a folder in the standard layout, or an evaluation's folder.

    For an evaluation folder (holding ``results.jsonl`` and ``predictions/``) the run
    statuses are used: failed runs count by kind. Server splits get ``submission.zip``
    instead of scores. The report is written to ``out_dir`` (default: the predictions
    folder given).
    """
    given = Path(predictions)
    if not given.is_dir():
        raise OutputError(f"predictions folder {given} does not exist")
    records: dict[str, dict[str, Any]] | None = None
    pred_root = given
    if (given / RESULTS_JSONL).is_file() and (given / PREDICTIONS_DIR).is_dir():
        records = RunStore(given).records()
        pred_root = given / PREDICTIONS_DIR
    samples = benchmark.samples()
    out = Path(out_dir) if out_dir is not None else given
    report = _report(benchmark, samples, pred_root, records, workers, out)
    report.run.update({"predictions": str(pred_root.resolve()), "data_root": str(benchmark.root.resolve())})
    report.save(out)
    return report


def _report(
    benchmark: Benchmark,
    samples: Sequence[Sample],
    predictions: Path,
    records: Mapping[str, Mapping[str, Any]] | None,
    workers: int,
    out: Path,
) -> Report:
    """Score (or export, for server splits) and assemble the report."""
    statuses = {key: str(r.get("status")) for key, r in (records or {}).items()}
    notes = list(benchmark.notes)
    if not benchmark.has_ground_truth:
        from revseg.evals.scoring import MISSING, SampleScore

        zip_path = out / SUBMISSION_ZIP
        filled = set(export_submission(benchmark, samples, predictions, zip_path, statuses))
        scores = []
        for s in samples:
            status = statuses.get(s.key) or (MISSING if s.key in filled else Status.OK.value)
            if s.key in filled and status in (Status.OK.value, Status.NO_TARGET.value):
                status = MISSING
            scores.append(SampleScore(s.key, s.video, s.expression, s.subset, status))
        notes.append(
            f"{benchmark.title} {benchmark.split} is scored by the benchmark's server: upload {SUBMISSION_ZIP}. "
            f"{len(filled)} samples had no complete prediction and were filled with empty masks."
        )
        table = Table(
            f"{benchmark.title} {benchmark.split}",
            "scored by the benchmark server (no local ground truth)",
            _paper_only(benchmark),
        )
        return Report(
            benchmark.name,
            benchmark.title,
            benchmark.split,
            [table],
            scores,
            list(benchmark.excluded),
            notes,
            submission=str(zip_path),
            setup=benchmark.describe(),
        )
    scores = score_samples(benchmark, samples, predictions, records, workers=workers)
    tables = benchmark.tables(scores)
    tables += benchmark.protocol_tables(samples, predictions, statuses)
    return Report(
        benchmark.name,
        benchmark.title,
        benchmark.split,
        tables,
        scores,
        list(benchmark.excluded),
        notes,
        setup=benchmark.describe(),
    )


def _paper_only(benchmark: Benchmark) -> list[Any]:
    from revseg.evals.report import Row, paper_rows

    return [Row("ours", None, {"J": None, "F": None, "J&F": None}, note="see the server"), *paper_rows(benchmark.paper)]
