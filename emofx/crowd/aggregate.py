"""Aggregate crowd answers into labels with crowd-kit: hard labels, distributions, agreement, worker quality.

Methods (crowd-kit, the optional extra ``emofx[crowd]``):

| method | model | needs worker identities |
|---|---|---|
| ``mv`` | majority vote (plurality; ties broken from the seed) | no |
| ``ferplus`` | the FER+ paper's majority rule (single votes dropped, > half of the rest) | no |
| ``ds`` | Dawid-Skene: one confusion matrix per worker, EM | yes |
| ``glad`` | GLAD: worker ability x image difficulty | yes |
| ``mace`` | MACE: each worker answers or spams | yes |
| ``wawa`` | majority vote weighted by each worker's agreement with the majority | yes |

``mv`` and ``ferplus`` work on vote counts alone (FER+); the others need the long-format
answers attached by :func:`emofx.crowd.answers.attach_answers`. Per image the result gives the
label, the label distribution (the model's posterior; the vote shares for ``mv``/``ferplus``),
agreement (share of the image's answers equal to its label) and the entropy of its answers
(bits); per worker the answer count, agreement with the aggregated labels and the method's own
quality estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emofx.crowd.answers import FERPLUS_LAYOUT, NON_EMOTIONS, answers_of, vote_matrix
from emofx.data.dataset import FaceDataset
from emofx.data.emotions import EMOTIONS
from emofx.data.loaders import ferplus_majority
from emofx.data.paths import install_command

METHODS: tuple[str, ...] = ("mv", "ferplus", "ds", "glad", "mace", "wawa")
QUALITY_MEANING: dict[str, str] = {
    "mv": "share of the worker's answers equal to the majority",
    "ferplus": "share of the worker's answers equal to the FER+ majority",
    "ds": "estimated accuracy (confusion-matrix diagonal weighted by the class priors)",
    "glad": "GLAD ability alpha (higher is better; 0 is chance)",
    "mace": "posterior probability that the worker answers rather than spams",
    "wawa": "share of the worker's answers equal to the majority (its weight)",
}
NO_LABEL = -1
CROWD_EXTRA = install_command("crowd")


class AggregationError(ValueError):
    """Answers cannot be aggregated as asked."""


def require_crowdkit() -> Any:
    """The crowd-kit aggregation module, or an error saying how to install it."""
    try:
        import crowdkit.aggregation as aggregation
    except ImportError:
        raise AggregationError(f"this needs crowd-kit, the optional extra: {CROWD_EXTRA}") from None
    return aggregation


@dataclass(frozen=True, eq=False)
class Aggregation:
    """Labels aggregated from crowd answers, per image and per worker.

    Attributes:
        method: one of :data:`METHODS`.
        vote_names: names of the label columns (emotions, then ``unknown``/``not_face``).
        labels: int (N,), index into ``vote_names``; :data:`NO_LABEL` when the image has no
            answer (or, for ``ferplus``, no majority).
        proba: float (N, V) label distribution (zeros for unanswered images).
        agreement: float (N,) share of the image's answers equal to its label (NaN when none).
        entropy: float (N,) entropy of the image's answers in bits (NaN when none).
        n_answers: int (N,).
        workers: one row per worker (``answers``, ``agreement``, ``quality``), or None for vote counts.
    """

    method: str
    vote_names: tuple[str, ...]
    labels: np.ndarray
    proba: np.ndarray
    agreement: np.ndarray
    entropy: np.ndarray
    n_answers: np.ndarray
    workers: pd.DataFrame | None

    def label_names(self) -> np.ndarray:
        """Aggregated label names ("" for :data:`NO_LABEL`)."""
        names = np.asarray(self.vote_names + ("",))
        return names[np.where(self.labels >= 0, self.labels, len(self.vote_names))]

    def per_image(self) -> pd.DataFrame:
        """One row per image: label, agreement, entropy, answer count and the distribution."""
        frame = pd.DataFrame({"label": self.label_names(), "agreement": self.agreement, "entropy": self.entropy,
                              "n_answers": self.n_answers})
        for j, name in enumerate(self.vote_names):
            frame[f"p_{name}"] = self.proba[:, j]
        frame.index.name = "image"
        return frame


def answer_statistics(votes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: share of answers equal to ``labels`` and the entropy (bits) of the answers."""
    votes = np.asarray(votes, np.float64)
    total = votes.sum(axis=1)
    share = np.divide(votes, total[:, None], out=np.zeros_like(votes), where=total[:, None] > 0)
    chosen = share[np.arange(len(votes)), np.maximum(labels, 0)]
    agreement = np.where((total > 0) & (labels >= 0), chosen, np.nan)
    logs = np.log2(share, out=np.zeros_like(share), where=share > 0)
    entropy = np.where(total > 0, -(share * logs).sum(axis=1) + 0.0, np.nan)  # + 0.0: no -0.0 for unanimity
    return agreement, entropy


def plurality(votes: np.ndarray, seed: int = 0) -> np.ndarray:
    """The most-voted column per row, ties broken at random from ``seed``; NO_LABEL for rows without votes."""
    votes = np.asarray(votes)
    tie_break = np.random.default_rng(seed).random(votes.shape)
    winners = np.argmax(np.where(votes == votes.max(axis=1, keepdims=True), tie_break, -1.0), axis=1)
    return np.where(votes.sum(axis=1) > 0, winners, NO_LABEL)


def aggregate(dataset: FaceDataset, method: str = "mv", *, seed: int = 0) -> Aggregation:
    """Aggregate the answers or votes attached to ``dataset`` with ``method`` (see the module table)."""
    votes, vote_names = vote_matrix(dataset)
    answers = answers_of(dataset) if "answer_worker" in dataset.extras else None
    return aggregate_votes(votes, vote_names, answers, method, seed=seed)


def aggregate_votes(votes: np.ndarray, vote_names: tuple[str, ...], answers: pd.DataFrame | None,
                    method: str = "mv", *, seed: int = 0) -> Aggregation:
    """Aggregate (N, V) vote counts, and the long-format answers behind them when workers are known.

    ``answers`` has columns ``image`` (row index into ``votes``), ``worker`` and ``label`` (a
    vote name); None for vote counts without workers.
    """
    if method not in METHODS:
        raise AggregationError(f"unknown aggregation method {method!r}; choose one of {', '.join(METHODS)}")
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(vote_names):
        raise AggregationError(f"votes of shape {votes.shape}: need (images, {len(vote_names)}) counts, one column per "
                               f"vote name ({', '.join(vote_names)})")
    if not np.issubdtype(votes.dtype, np.number) or not np.isfinite(votes).all() or (votes < 0).any():
        raise AggregationError("votes must be finite, non-negative counts (a NaN or negative count: a damaged votes "
                               "table?)")
    n = len(votes)
    n_answers = votes.sum(axis=1).astype(np.int64)
    if method in ("mv", "ferplus"):
        labels = plurality(votes, seed) if method == "mv" else ferplus_majority(votes)
        proba = (votes / np.maximum(n_answers, 1)[:, None]).astype(np.float32)
        workers = None if answers is None else _worker_table(answers, labels, vote_names, None)
    else:
        if answers is None:
            raise AggregationError(
                f"method {method!r} models each worker, but this dataset has vote counts without worker "
                "identities (e.g. FER+); use --method mv (plurality) or ferplus (the FER+ majority rule), "
                "and the vote distribution (--soft-targets) for soft labels")
        if answers["worker"].nunique() < 2:
            raise AggregationError(f"method {method!r} models each worker by how their answers agree with the others', "
                                   f"and these answers come from {answers['worker'].nunique()} worker: use mv")
        proba_frame, quality = _fit_crowdkit(method, answers, seed)
        proba = np.zeros((n, len(vote_names)), np.float32)
        rows = proba_frame.index.to_numpy(np.int64)
        proba[rows] = proba_frame.reindex(columns=list(vote_names), fill_value=0.0).to_numpy(np.float32)
        labels = np.full(n, NO_LABEL, np.int64)
        labels[rows] = np.argmax(proba[rows], axis=1)
        workers = _worker_table(answers, labels, vote_names, quality)
    agreement, entropy = answer_statistics(votes, labels)
    return Aggregation(method=method, vote_names=tuple(vote_names), labels=labels.astype(np.int64), proba=proba,
                       agreement=agreement.astype(np.float32), entropy=entropy.astype(np.float32),
                       n_answers=n_answers, workers=workers)


def _fit_crowdkit(method: str, answers: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """crowd-kit's posterior per image (index = image) and its per-worker quality estimate."""
    kit = require_crowdkit()
    data = answers.rename(columns={"image": "task"})[["task", "worker", "label"]]
    if method == "ds":
        model = kit.DawidSkene(n_iter=100).fit(data)
        priors = model.priors_
        errors = model.errors_
        quality = pd.Series({w: float(sum(priors[c] * errors.loc[(w, c), c] for c in priors.index
                                          if (w, c) in errors.index))
                             for w in errors.index.get_level_values(0).unique()})
        return model.probas_, quality
    if method == "glad":
        model = kit.GLAD().fit(data)
        return model.probas_, model.alphas_.astype(float)
    if method == "mace":
        model = kit.MACE(random_state=seed).fit(data)
        names = pd.factorize(data["worker"])[1]
        return model.probas_, pd.Series(model.spamming_[:, 1], index=names)
    # Wawa: crowd-kit's Wawa.predict calls scikit-learn's check_is_fitted, which fails with
    # scikit-learn >= 1.6; Wawa is crowd-kit's MajorityVote weighted by the skills Wawa.fit estimates.
    skills = kit.Wawa().fit(data).skills_
    return kit.MajorityVote().fit(data, skills=skills).probas_, skills.astype(float)


def _worker_table(answers: pd.DataFrame, labels: np.ndarray, vote_names: tuple[str, ...],
                  quality: pd.Series | None) -> pd.DataFrame:
    names = np.asarray(tuple(vote_names) + ("",))
    aggregated = names[np.where(labels >= 0, labels, len(vote_names))][answers["image"].to_numpy()]
    agrees = answers.assign(agrees=answers["label"].to_numpy() == aggregated)
    table = agrees.groupby("worker").agg(answers=("label", "size"), agreement=("agrees", "mean"))
    table["quality"] = table["agreement"] if quality is None else quality.reindex(table.index).astype(float)
    return table


# ---------------------------------------------------------------------------- relabelling
def apply_aggregation(dataset: FaceDataset, result: Aggregation, *, keep_unanswered: bool | None = None
                      ) -> tuple[FaceDataset, dict[str, int]]:
    """The dataset relabelled by ``result``, with per-image agreement, entropy and distribution as extras.

    Images whose aggregated label is not an emotion (``unknown``, ``not_face``) or that have no
    label (no majority) are dropped; unanswered images keep their label unless
    ``keep_unanswered`` is False. By default (None) they keep it, except under FER+ votes: FER+ rated every
    FER2013 image, so one without a FER+ row is one FER+ left out (not a face), not one nobody got to.
    Returns the dataset and the counts dropped by reason.
    """
    if len(result.labels) != len(dataset):
        raise AggregationError(f"aggregation of {len(result.labels)} images applied to a dataset of {len(dataset)}")
    if keep_unanswered is None:
        keep_unanswered = dataset.meta.get("answers", {}).get("layout") != FERPLUS_LAYOUT
    names = result.label_names()
    answered = result.n_answers > 0
    new_names = np.where(answered, names, dataset.label_names)
    emotion = np.isin(new_names, EMOTIONS)
    keep = emotion & (answered | keep_unanswered)
    dropped = {
        "no_label": int(np.sum(answered & (result.labels == NO_LABEL))),
        **{f"label_{n}": int(np.sum(answered & (names == n))) for n in NON_EMOTIONS},
        "unanswered": 0 if keep_unanswered else int(np.sum(~answered)),
    }
    if not keep.any():
        raise AggregationError(f"no image keeps an emotion label after {result.method} aggregation ({dropped})")
    extras = {
        **dataset.extras,
        "agreement": result.agreement, "label_entropy": result.entropy,
        "label_proba": result.proba, "n_answers": result.n_answers,
    }
    relabelled = FaceDataset.from_label_names(
        dataset.images[keep], new_names[keep], culture=dataset.culture[keep], subject=dataset.subject[keep],
        path=dataset.path[keep], split=dataset.split[keep], extras={k: v[keep] for k, v in extras.items()},
        meta={**dataset.meta, "aggregation": {"method": result.method, "dropped": dropped,
                                              "label_proba_names": list(result.vote_names),
                                              "quality": QUALITY_MEANING.get(result.method, "")}},
        skipped=dataset.skipped,
    )
    return relabelled, dropped


def accuracy_against(result: Aggregation, truth_names: np.ndarray) -> float:
    """Share of images whose aggregated label equals the true label name."""
    return float(np.mean(result.label_names() == np.asarray(truth_names)))

