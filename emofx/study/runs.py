"""Runs: one training run end to end (split, fit, test evaluation) recorded in a directory.

A run directory holds::

    metrics.json    test metrics, split sizes, best step, timing, configs, data fingerprint
    history.csv     step, epoch, lr, train_loss, train_error, val_error, val_loss
    split.json      the train/val/test indices into the dataset
    checkpoint/     the best-validation model (see :class:`emofx.nets.checkpoint.TrainedModel`)
    training_state.msgpack   while training: the full state, saved at validations at least a minute apart
                             (removed once the run is complete; kept when it was interrupted)

A directory that already holds a *different* run is never overwritten unless asked; re-running the very same run
(same data, split, seed, trial and configs) is allowed, and an interrupted one (killed, Ctrl-C) continues with
``resume=True`` to the numbers it would have reached uninterrupted. :func:`load_run` and :func:`load_runs` read
runs back for comparisons, notebooks and figures.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.sources import culture_part
from emofx.data.paths import RecordError, atomic_write, given_twice, read_json_record
from emofx.nets.checkpoint import CHECKPOINT_DIR, CheckpointError, TrainedModel, device_description, library_versions
from emofx.study.evaluation import Evaluation, average_evaluations, evaluate, with_totals
from emofx.study.machine import CpuTimes, cpu_shares, cpu_times
from emofx.nets.allocator import allocator_setting
from emofx.nets.model import ModelConfig
from emofx.nets.precision import precision_for, use_precision
from emofx.nets.train_state import STATE_FILE, read_tag
from emofx.data.splits import Split, copies_note, count_test_copies, make_split
from emofx.nets.lanes import Lane, fit_lanes, lanes_pay_off
from emofx.nets.training import TrainConfig, TrainResult, TrainingError, fit

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SPLIT_FILE = "split.json"
# the parts of metrics.json that readers take apart as objects (a damaged record is refused on reading)
RECORDS_IN_METRICS = ("data", "config", "identity", "per_class_error", "versions")
FINISHED = ("completed", "early_stopping", "nan_loss")  # no state kept: resuming a diverged run diverges again


class RunError(ValueError):
    """A run directory is missing, incomplete, or would overwrite another run."""


class RunComplete(RunError):
    """The run asked to be resumed has finished already: nothing to do (not an error to the user)."""


@dataclass(frozen=True, eq=False)
class Run:
    """A recorded run: its directory, metrics, history and split; the model loads on first use."""

    directory: Path
    metrics: dict[str, Any]
    history: pd.DataFrame
    split: Split

    @property
    def name(self) -> str:
        """The run's folder name."""
        return self.directory.name

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes the run's model predicts, in its output order."""
        return tuple(self.metrics["classes"])

    @cached_property
    def model(self) -> TrainedModel:
        """The best-validation model (read from ``checkpoint/`` on first access)."""
        return TrainedModel.load(self.directory, expect_classes=self.classes)

    def confusion(self, totals: bool = True) -> pd.DataFrame:
        """Test confusion counts (rows true, columns predicted)."""
        counts = pd.DataFrame(self.metrics["confusion"], index=pd.Index(self.classes, name="true"),
                              columns=pd.Index(self.classes, name="predicted"))
        return with_totals(counts) if totals else counts

    def per_class_error(self) -> pd.Series:
        """Test misclassification % per class and ``total``."""
        return pd.Series(self.metrics["per_class_error"], name="misclassified_percent", dtype=float)

    def dataset(self) -> FaceDataset:
        """The dataset the run was trained on (from the path recorded in metrics.json; of a file of several
        cultures, the culture's part the run was trained on)."""
        path = self.metrics.get("data", {}).get("path")
        if not path:
            raise RunError(f"{self.directory} does not record its dataset's path (trained without data_path=): load "
                           "the dataset yourself, with FaceDataset.load")
        if not Path(path).is_file():
            raise RunError(f"{self.directory} was trained on {path}, which is not there (moved or deleted): put the "
                           "file back, or give the dataset explicitly (emofx evaluate --data)")
        return self.own_part(FaceDataset.load(path), path)

    def own_part(self, dataset: FaceDataset, source: str) -> FaceDataset:
        """``dataset`` (read from ``source``) as the run saw it: where the run was trained on one culture of a file
        holding several (``emofx train --culture``), that culture's images; else the whole dataset."""
        culture = self.metrics.get("data", {}).get("culture")
        return culture_part(dataset, culture, source) if culture else dataset


# ---------------------------------------------------------------------------- identity and safety


def dataset_fingerprint(dataset: FaceDataset) -> str:
    """A content hash of the images, labels and classes (identifies the data of a run)."""
    digest = hashlib.sha256()
    for part in (dataset.images, dataset.labels, np.asarray(dataset.classes, dtype=str)):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()[:16]


def run_identity(dataset: FaceDataset, split_kind: str, seed: int, trial: int, train_config: TrainConfig,
                 model_config: ModelConfig, init_from: str | None) -> dict[str, Any]:
    """What makes two runs the same run (and so safe to write over each other)."""
    return {
        "data": dataset_fingerprint(dataset),
        "split": split_kind,
        "seed": int(seed),
        "trial": int(trial),
        "train_config": train_config.to_dict(),
        "model": {k: v for k, v in model_config.architecture().items() if k != "num_classes"},
        "init_from": init_from,
    }


def check_run_directory(directory: str | os.PathLike, identity: dict[str, Any], overwrite: bool = False,
                        resume: bool = False) -> Path:
    """Refuse (before any training) a directory holding another run or unrelated files, unless
    ``overwrite``; with ``resume``, one that holds no interrupted training of this very run."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunError(f"{directory} exists and is not a directory; choose another --out")
    if resume:
        return _check_resumable(directory, identity)
    if not directory.exists() or overwrite or not any(directory.iterdir()):
        return directory
    if (directory / STATE_FILE).exists():
        raise RunError(f"{directory} holds an unfinished run; pass --resume to continue it or --overwrite to start "
                       "afresh")
    if not (directory / METRICS_FILE).exists():
        raise RunError(f"{directory} already holds files that are not an emofx run; choose another --out "
                       "or pass --overwrite")
    if _recorded_identity(directory) != json.loads(json.dumps(identity)):
        raise RunError(f"{directory} already holds a different run; choose another --out or pass --overwrite "
                       "to replace it")
    return directory


def _check_resumable(directory: Path, identity: dict[str, Any]) -> Path:
    if not (directory / STATE_FILE).exists():
        finished = ((directory / METRICS_FILE).exists()
                    and _recorded_identity(directory) == json.loads(json.dumps(identity)))
        if finished:
            raise RunComplete(f"{directory}: already complete, kept as it is")
        raise RunError(f"{directory} holds no interrupted run to resume (no {STATE_FILE})")
    if read_tag(directory / STATE_FILE).get("tag") != json.loads(json.dumps(identity)):
        raise RunError(f"{directory} holds an interrupted run with other data, split, seed, trial or settings; "
                       "resume it with its own command, or choose another --out")
    return directory


def _recorded_identity(directory: Path) -> Any:
    """The identity a finished run recorded; a run whose metrics.json or checkpoint cannot be read is refused."""
    try:
        TrainedModel.load(directory)
        return read_json_record(directory / METRICS_FILE).get("identity")
    except (RecordError, CheckpointError, OSError) as err:
        raise RunError(f"{directory} holds a damaged run ({err}); pass --overwrite to train it again") from None


# ---------------------------------------------------------------------------- training a run


@dataclass(frozen=True)
class RunPlan:
    """One run to train: its data, directory, trial, seed (default: the training configuration's)
    and split (``split`` replaces the one ``split_kind`` would make, e.g. the matched protocol's);
    ``data_path`` and ``culture`` (where ``dataset`` is that culture's part of a file of several) are recorded."""

    dataset: FaceDataset
    directory: str | os.PathLike
    trial: int = 0
    split_kind: str = "auto"
    split: Split | None = None
    data_path: str | os.PathLike | None = None
    seed: int | None = None
    culture: str | None = None  # the culture taken out of the file at data_path (recorded), None: the whole file


@dataclass(frozen=True)
class _Prepared:
    plan: RunPlan
    directory: Path
    identity: dict[str, Any]
    split: Split
    config: TrainConfig  # the training configuration with the plan's seed
    resume: bool = False  # continue the interrupted training saved in the directory


def _prepare(plan: RunPlan, train_config: TrainConfig, model_config: ModelConfig, init_path: str | None,
             overwrite: bool, resume: bool | None) -> _Prepared | None:
    """The run's identity, a directory checked to be safe to write, its split and configuration.

    ``resume``: continue the interrupted training in the directory; ``None``: continue where the run stands
    (resume it if interrupted, start it if its directory is empty, skip it (None) if this very run is complete)."""
    config = train_config if plan.seed is None else replace(train_config, seed=int(plan.seed))
    identity = run_identity(plan.dataset, plan.split_kind, config.seed, plan.trial, config, model_config, init_path)
    if plan.split is not None:
        identity["split_indices"] = hashlib.sha256(json.dumps(plan.split.to_dict()).encode()).hexdigest()[:16]
    if resume is None:
        directory = Path(plan.directory)
        if (directory / METRICS_FILE).exists() and not (directory / STATE_FILE).exists() and (
                _recorded_identity(directory) == json.loads(json.dumps(identity))):
            return None
        resume = (directory / STATE_FILE).exists()
    directory = check_run_directory(plan.directory, identity, overwrite, resume)
    split = plan.split if plan.split is not None else make_split(plan.dataset, kind=plan.split_kind,
                                                                 seed=config.seed, trial=plan.trial)
    if len(split.test) == 0:
        raise TrainingError(f"the {plan.split_kind!r} split of this dataset has no test images; use another --split")
    return _Prepared(plan, directory, identity, split, config, resume)


def check_plans(plans: Sequence[RunPlan], train_config: TrainConfig, model_config: ModelConfig,
                overwrite: bool = False) -> None:
    """Refuse plans (trained from scratch) that :func:`train_run` would refuse, before the caller writes
    anything: a directory holding another run or unrelated files, a split without test images."""
    for plan in plans:
        _prepare(plan, train_config, model_config, None, overwrite, False)


def train_run(
    dataset: FaceDataset,
    directory: str | os.PathLike,
    *,
    split_kind: str = "auto",
    trial: int = 0,
    train_config: TrainConfig = TrainConfig(),
    model_config: ModelConfig | None = None,
    init_from: str | os.PathLike | None = None,
    data_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    split: Split | None = None,
    resume: bool = False,
    culture: str | None = None,
) -> tuple[Run, TrainResult]:
    """Split ``dataset``, train, evaluate on the test part and record everything in ``directory``.

    Randomness flows from ``train_config.seed`` and ``trial``: the split is ``make_split(dataset,
    split_kind, seed=seed, trial=trial)`` and training uses the same pair, so it gives the same
    numbers twice and another trial gives another split. Returns the run and the training
    result (whose ``stop_reason`` tells whether training completed). ``split`` replaces the made
    split (e.g. the matched protocol's, :func:`emofx.study.cultures.matched_splits`). The training state is
    saved in ``directory`` at validations (see :func:`emofx.nets.training.fit`); ``resume`` continues an
    interrupted run. ``culture``: ``dataset`` is this culture's part of the file at ``data_path``, which holds
    several (:func:`emofx.data.sources.culture_part`); recorded, so that :meth:`Run.dataset` gives it back.
    """
    model_config = model_config or ModelConfig(num_classes=len(dataset.classes))
    init_path = str(Path(init_from).resolve()) if init_from is not None else None
    plan = RunPlan(dataset, directory, trial, split_kind, split, data_path, culture=culture)
    prepared = _prepare(plan, train_config, model_config, init_path, overwrite, resume)
    initial = TrainedModel.load(init_from) if init_from is not None else None
    return _train_alone(prepared, model_config, initial, init_path, progress)


def _train_alone(prepared: _Prepared, model_config: ModelConfig, initial: TrainedModel | None, init_path: str | None,
                 progress: bool) -> tuple[Run, TrainResult]:
    """Train (or resume) one prepared run by itself (:func:`emofx.nets.training.fit`) and record it."""
    plan, split = prepared.plan, prepared.split
    started = cpu_times()
    result = fit(plan.dataset.subset(split.train), plan.dataset.subset(split.val), prepared.config, model_config,
                 trial=plan.trial, init_from=initial, progress=progress, state_path=prepared.directory / STATE_FILE,
                 resume=prepared.resume, tag=prepared.identity)
    return _record(prepared, result, init_path, started), result


def train_runs(
    plans: Sequence[RunPlan],
    *,
    train_config: TrainConfig = TrainConfig(),
    model_config: ModelConfig | None = None,
    init_from: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    side_by_side: bool | None = None,
    resume: bool = False,
) -> list[tuple[Run, TrainResult]]:
    """Train several runs (trials, seeds, cultures of one image size and class set) and record each
    as :func:`train_run` would. Every directory is checked before any training.

    ``side_by_side``: as one vmapped program (:func:`emofx.nets.lanes.fit_lanes`; the same
    directories, files and numbers within float tolerance, the runs' times those of the whole
    batch), or one after another (exactly :func:`train_run`'s numbers); default: side by side where
    that is faster (:func:`emofx.nets.lanes.lanes_pay_off`: on a GPU, not on a CPU). ``resume``
    (one after another only) continues where the runs stand after an interruption: a run already
    complete is skipped (and not returned), an interrupted one resumed, the others started."""
    if not plans:
        return []
    if resume and side_by_side:
        raise RunError("runs trained side by side start afresh; resume them one after another (side_by_side=False)")
    model_config = model_config or ModelConfig(num_classes=len(plans[0].dataset.classes))
    init_path = str(Path(init_from).resolve()) if init_from is not None else None
    if len({Path(plan.directory).resolve() for plan in plans}) < len(plans):
        raise RunError("two of the runs to train share a directory; give each its own")
    prepared = [p for p in (_prepare(plan, train_config, model_config, init_path, overwrite, None if resume else False)
                            for plan in plans) if p is not None]
    initial = TrainedModel.load(init_from) if init_from is not None else None
    if resume or not (lanes_pay_off() if side_by_side is None else side_by_side):
        trained = []
        for one in prepared:
            trained.append(_train_alone(one, model_config, initial, init_path, progress))
            if trained[-1][1].stop_reason == "interrupted":  # Ctrl-C stops the whole batch, this run recorded
                break
        return trained
    lanes = [Lane(p.plan.dataset.subset(p.split.train), p.plan.dataset.subset(p.split.val), trial=p.plan.trial,
                  seed=p.config.seed, init_from=initial) for p in prepared]
    started = cpu_times()
    results = fit_lanes(lanes, train_config, model_config, progress=progress)
    return [(_record(p, result, init_path, started), result) for p, result in zip(prepared, results)]


def _record(prepared: _Prepared, result: TrainResult, init_path: str | None, started: CpuTimes) -> Run:
    """Evaluate the trained model on the run's test part and write the run directory; ``started``:
    the CPU times when training (in this process: after a resume, since then) began."""
    dataset, split, identity, train_config = prepared.plan.dataset, prepared.split, prepared.identity, prepared.config
    data_path = prepared.plan.data_path
    precision = precision_for(train_config.precision)
    with use_precision(precision):  # the run's own, as in its training and validation
        evaluation = evaluate(result.model, dataset.subset(split.test), flip_average=train_config.flip_average)
    copies = count_test_copies(dataset, split)
    metrics = {
        "test_accuracy": evaluation.accuracy,
        "balanced_accuracy": evaluation.balanced_accuracy,
        "macro_f1": evaluation.macro_f1,
        "classes": list(evaluation.classes),
        "confusion": evaluation.confusion(totals=False).to_numpy().tolist(),
        "per_class_error": evaluation.summary()["per_class_error"],
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "best_step": result.best_step,
        "best_val_error": result.best_val_error,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "stop_message": result.stop_message,
        "notes": [*result.notes, *copies_note(copies, len(split.test))],
        "test_copies_of_training": copies,
        "seconds": result.seconds,
        "train_step_seconds": result.step_seconds,
        "compile_seconds": result.compile_seconds,
        "side_by_side": result.side_by_side,  # runs trained as one program: the times above are all of theirs
        "ready_seconds": None if np.isnan(result.ready_seconds) else result.ready_seconds,
        "seed": int(train_config.seed),
        "trial": int(prepared.plan.trial),
        "recipe": train_config.recipe,
        "norm": result.model.config.norm,
        "split": split.kind,
        "culture": _cultures(dataset),
        "data": {"path": str(Path(data_path).resolve()) if data_path else None, "n": len(dataset),
                 "fingerprint": identity["data"], "classes": list(dataset.classes), "culture": prepared.plan.culture},
        "init_from": init_path,
        "config": {"train": train_config.to_dict(), "model": result.model.config.to_dict()},
        "versions": library_versions(),
        "device": device_description(),
        "precision": precision,  # what it trained and was evaluated at (config.train.precision: what was asked)
        "malloc_tunables": allocator_setting(),
        "cpu_shares": cpu_shares(started),
        "identity": identity,
    }
    run = write_run(prepared.directory, result.model, metrics, result.history, split)
    if result.stop_reason in FINISHED:
        (prepared.directory / STATE_FILE).unlink(missing_ok=True)
    return run


def _cultures(dataset: FaceDataset) -> str:
    names = sorted(set(dataset.culture) - {""})
    return "+".join(names)


def write_run(directory: str | os.PathLike, model: TrainedModel, metrics: dict[str, Any],
              history: pd.DataFrame, split: Split) -> Run:
    """Write the four parts of a run directory (each file atomically); returns the :class:`Run`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / CHECKPOINT_DIR, extra={"split": split.to_dict()}, overwrite=True)  # checked by the caller
    atomic_write(directory / SPLIT_FILE, json.dumps(split.to_dict()).encode())
    atomic_write(directory / HISTORY_FILE, history.to_csv(index=False).encode())
    atomic_write(directory / METRICS_FILE, json.dumps(metrics, indent=2).encode())
    return Run(directory=directory, metrics=json.loads(json.dumps(metrics)), history=history, split=split)


# ---------------------------------------------------------------------------- reading runs


def load_run(directory: str | os.PathLike) -> Run:
    """Read one run directory (metrics.json, history.csv, split.json; the model on demand)."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "a file, not a run directory" if directory.exists() else "no such run directory"
        raise RunError(f"{directory}: {what}; give a directory `emofx train` wrote")
    missing = [name for name in (METRICS_FILE, HISTORY_FILE, SPLIT_FILE) if not (directory / name).exists()]
    below = find_runs(directory) if missing else []
    if below:  # e.g. the --out of `emofx train --trials N`, which holds trial-0 .. trial-(N-1)
        names = ", ".join(str(p.relative_to(directory)) for p in below[:5]) + (", ..." if len(below) > 5 else "")
        raise RunError(f"{directory} holds {len(below)} runs ({names}), not one run; give one of them, e.g. "
                       f"{below[0]}")
    if missing:
        raise RunError(f"{directory} is not a complete emofx run (missing {', '.join(missing)}); train it: emofx train")
    try:
        metrics = read_json_record(directory / METRICS_FILE)
        split = Split.from_dict(read_json_record(directory / SPLIT_FILE))
        history = pd.read_csv(directory / HISTORY_FILE)
        if lacking := [c for c in ("step", "epoch", "train_error", "val_error") if c not in history]:  # those read
            raise pd.errors.ParserError(f"no column {', '.join(lacking)}")
        if misshapen := [key for key in RECORDS_IN_METRICS if not isinstance(metrics.get(key, {}), dict)]:
            raise RecordError(f"{directory / METRICS_FILE}: {', '.join(misshapen)} "
                              f"{'is not a JSON object' if len(misshapen) == 1 else 'are not JSON objects'}")
    except (RecordError, KeyError, TypeError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        where = f"{HISTORY_FILE}: " if isinstance(err, pd.errors.ParserError | pd.errors.EmptyDataError) else ""
        raise RunError(f"{directory} holds a corrupt run file ({where}{err}); train the run again") from err
    return Run(directory=directory, metrics=metrics, history=history, split=split)


def shared_test_images(runs: Sequence[Run]) -> FaceDataset:
    """The test images one run, or several forming an ensemble, were scored on.

    Several runs must share them: the same dataset (the same recorded fingerprint, or without one the
    same file) and test split, e.g. one trial fine-tuned from different pre-trained models, or trained
    by two studies that each keep a copy of the data."""
    if not runs:
        raise RunError("no runs given")
    for run in runs:
        if not run.metrics.get("data", {}).get("path"):
            raise RunError(f"{run.directory} does not record its dataset's path; evaluate it on a dataset given "
                           "explicitly (--data)")
    first = runs[0]
    for run in runs[1:]:
        if not _same_data(run.metrics["data"], first.metrics["data"]) or not np.array_equal(run.split.test,
                                                                                          first.split.test):
            raise RunError(f"{run.directory} was tested on other images than {first.directory} (another dataset or "
                           "split); an ensemble or a comparison (--against) needs the same test images, or a dataset "
                           "given explicitly (--data)")
    dataset = first.dataset()
    recorded = first.metrics["data"].get("fingerprint")
    if recorded is not None and recorded != dataset_fingerprint(dataset):
        raise RunError(f"{first.metrics['data']['path']} has changed since {first.directory} was trained on it "
                       f"(fingerprint {dataset_fingerprint(dataset)}, recorded {recorded}): its test split no longer "
                       "names the test images; evaluate on a dataset given explicitly (--data)")
    return dataset.subset(first.split.test)


def _same_data(recorded: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two runs' recorded datasets are the same images: by fingerprint where both have one, else by path."""
    if recorded.get("fingerprint") and other.get("fingerprint"):
        return recorded["fingerprint"] == other["fingerprint"]
    return recorded["path"] == other["path"]


def evaluate_runs(runs: Sequence[Run], dataset: FaceDataset | None = None,
                  flip_average: bool | None = None, progress: bool = False) -> Evaluation:
    """Score one run, or several as an ensemble (each image's probabilities averaged over the models).

    On ``dataset`` whole (images a run learned from inflate the score: :func:`emofx.study.held_out.unseen_part`
    leaves them out, as `emofx evaluate --data` does), or by default on the runs' shared test images. Each model
    scores as its recipe says (flip averaging under ``strong``), as its metrics.json does, unless ``flip_average``
    is given; ``progress``: a bar per model on a large set. A run given twice is refused (it would count twice)."""
    if (twice := given_twice([run.directory for run in runs])) is not None:
        raise ValueError(f"run {twice} is given twice; its model would count twice in the ensemble")
    images = shared_test_images(runs) if dataset is None else dataset
    return average_evaluations([
        evaluate(run.model, images, flip_average=run.model.flip_average if flip_average is None else flip_average,
                 progress=progress) for run in runs])


def find_runs(parent: str | os.PathLike) -> list[Path]:
    """Every run directory at or below ``parent`` (those holding metrics.json), sorted by path."""
    parent = Path(parent)
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent} is not a directory of runs")
    return sorted(p.parent for p in parent.rglob(METRICS_FILE))


def load_runs(parent: str | os.PathLike) -> list[Run]:
    """All runs at or below ``parent``, sorted by path (an empty list when there are none)."""
    return [load_run(d) for d in find_runs(parent)]
