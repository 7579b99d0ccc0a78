"""Crowd answers as data: read them, check them, attach them to a dataset.

Long format is one row per (image, worker) answer: ``image``, ``worker``, ``label`` and an
optional ``time`` (seconds spent). Two export layouts are read:

- a Mechanical Turk batch-results file (``Input.image_url``, ``WorkerId``, ``Answer.emotion``,
  optional ``WorkTimeInSeconds``; rejected assignments are left out);
- a plain CSV with ``image, worker, label[, time]`` (``task``/``item`` and ``annotator`` are
  accepted for ``image`` and ``worker``; notebook 06 writes this layout).

Labels are canonical emotions (aliases allowed) or the two non-emotion answers ``unknown``
and ``not_face`` (FER+'s). Attached to a dataset the answers become ``extras["votes"]``
(N, V) counts over ``meta["vote_names"]`` (the input of ``emofx train --soft-targets``) and,
when workers are named, ``extras["answer_worker"]`` / ``extras["answer_label"]`` (N, K)
indices (-1 = no answer) into ``meta["workers"]`` / ``meta["vote_names"]``, which the
aggregation methods that model workers need. Vote counts without workers (FER+) and observer
proportions (the Taiwanese set) become ``extras["votes"]`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import ALIASES, EMOTIONS
from emofx.data.loaders.fer2013 import FERPLUS_VOTE_COLUMNS, read_ferplus_votes

NON_EMOTIONS: tuple[str, ...] = ("unknown", "not_face")
FERPLUS_LAYOUT = "ferplus-votes"  # answers.layout of FER+ vote counts: FER+ rated every FER2013 image
_NON_EMOTION_ALIASES: dict[str, str] = {
    "unknown": "unknown", "uncertain": "unknown", "unsure": "unknown", "none": "unknown",
    "not_face": "not_face", "nf": "not_face", "not a face": "not_face", "notface": "not_face", "no face": "not_face",
}
ANSWER_COLUMNS: tuple[str, ...] = ("image", "worker", "label", "time")
_PLAIN_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("image", "task", "item", "path"),
    "worker": ("worker", "annotator", "rater"),
    "label": ("label", "emotion", "answer"),
    "time": ("time", "seconds"),
}
_MTURK_INPUT, _MTURK_ANSWER = "Input.", "Answer."


class AnswersError(ValueError):
    """Answers cannot be read or attached (the message says which file and why)."""


def canonical_answer(name: str) -> str | None:
    """The canonical name of an answer label (emotion or non-emotion), or None when unknown."""
    key = str(name).strip().lower().replace("-", "_")
    return ALIASES.get(key) or _NON_EMOTION_ALIASES.get(key) or _NON_EMOTION_ALIASES.get(key.replace("_", " "))


@dataclass(frozen=True)
class Answers:
    """Checked long-format answers and what was left out of the file, with counts.

    Attributes:
        frame: columns ``image``, ``worker``, ``label`` (canonical) and ``time`` (float, NaN when absent).
        layout: ``mturk``, ``plain`` or ``frame``.
        source: the file read ("" for a frame).
        dropped: counts of rows left out by reason (``empty``, ``unknown_label``, ``repeated``, ``rejected``).
        unknown_labels: the label texts that were not understood, with counts.
    """

    frame: pd.DataFrame
    layout: str
    source: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    unknown_labels: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: what was read and what was left out."""
        text = (f"{len(self.frame)} answers from {self.frame['worker'].nunique()} workers on "
                f"{self.frame['image'].nunique()} images ({self.layout} layout)")
        left = {k: v for k, v in self.dropped.items() if v}
        if left:
            text += "; left out: " + ", ".join(f"{k} {v}" for k, v in left.items())
        if self.unknown_labels:
            text += " (unknown labels: " + ", ".join(f"{k!r} x{v}" for k, v in list(self.unknown_labels.items())[:8]) + ")"
        return text


def _plain_column(columns: Sequence[str], role: str) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[n] for n in _PLAIN_NAMES[role] if n in lowered), None)


def _one_prefixed(columns: Sequence[str], prefix: str, preferred: Sequence[str], path: Path) -> str:
    found = [c for c in columns if c.startswith(prefix)]
    for name in preferred:
        if prefix + name in found:
            return prefix + name
    if len(found) != 1:
        raise AnswersError(f"{path}: cannot tell which {prefix}* column to use among {found or 'none'}; "
                           f"name it {prefix}{preferred[0]}")
    return found[0]


def read_answers(path: str | os.PathLike) -> Answers:
    """Read a Mechanical Turk batch-results CSV or a plain ``image, worker, label[, time]`` CSV."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"answers file {path} " + ("is a folder; give the CSV file in it" if path.is_dir()
                                                           else "does not exist"))
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise AnswersError(f"{path} is empty; expected a CSV with columns image, worker, label[, time] "
                           "or a Mechanical Turk batch-results file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise AnswersError(f"{path} is not a readable CSV ({err})") from None
    columns = list(raw.columns)
    rejected = 0
    if "WorkerId" in columns:
        layout = "mturk"
        image = _one_prefixed(columns, _MTURK_INPUT, ("image_url", "image", "url"), path)
        label = _one_prefixed(columns, _MTURK_ANSWER, ("emotion", "emotion.label", "label"), path)
        if "AssignmentStatus" in columns:
            keep = raw["AssignmentStatus"].str.strip().str.lower() != "rejected"
            rejected = int((~keep).sum())
            raw = raw[keep]
        mapping = {"image": image, "worker": "WorkerId", "label": label,
                   "time": "WorkTimeInSeconds" if "WorkTimeInSeconds" in columns else None}
    else:
        layout = "plain"
        mapping = {role: _plain_column(columns, role) for role in _PLAIN_NAMES}
        missing = [role for role in ("image", "worker", "label") if mapping[role] is None]
        if missing:
            raise AnswersError(f"{path}: no column for {missing}; expected image, worker, label[, time] "
                               f"or a Mechanical Turk batch-results file (columns found: {columns})")
    frame = pd.DataFrame({role: (raw[col] if col else np.nan) for role, col in mapping.items()})
    answers = answers_from_frame(frame, layout=layout, source=str(path))
    return replace(answers, dropped={**answers.dropped, "rejected": rejected})


def answers_from_frame(frame: pd.DataFrame, *, layout: str = "frame", source: str = "") -> Answers:
    """Check long-format answers given as a frame with ``image``, ``worker``, ``label`` [, ``time``].

    Rows with an empty field or an unknown label are left out and counted; a worker's second
    answer to the same image is left out (the first is kept) and counted.
    """
    where = f"{source}: " if source else ""
    missing = [c for c in ("image", "worker", "label") if c not in frame.columns]
    if missing:
        raise AnswersError(f"{where}answers need columns image, worker, label; missing {missing}")
    fields = ["image", "worker", "label"]
    missing_value = frame[fields].isna().any(axis=1).to_numpy()  # NaN/None cells, not the text "None" or "nan"
    frame = pd.DataFrame({
        "image": frame["image"].astype(str).str.strip(),
        "worker": frame["worker"].astype(str).str.strip(),
        "label": frame["label"].astype(str).str.strip(),
        "time": pd.to_numeric(frame["time"], errors="coerce") if "time" in frame.columns else np.nan,
    })
    empty = (frame[fields] == "").any(axis=1) | missing_value
    frame = frame[~empty]
    canonical = frame["label"].map(canonical_answer)
    unknown = frame.loc[canonical.isna(), "label"].value_counts()
    frame = frame.assign(label=canonical)[canonical.notna()]
    repeated = frame.duplicated(["image", "worker"], keep="first")
    frame = frame[~repeated].reset_index(drop=True)
    if frame.empty:
        raise AnswersError(f"{where}no usable answers (empty rows {int(empty.sum())}, unknown labels "
                           f"{int(unknown.sum())}: {list(unknown.index[:8])}); labels must be emotions "
                           f"({', '.join(EMOTIONS)}) or {', '.join(NON_EMOTIONS)}")
    return Answers(
        frame=frame, layout=layout, source=source,
        dropped={"empty": int(empty.sum()), "unknown_label": int(unknown.sum()), "repeated": int(repeated.sum())},
        unknown_labels={str(k): int(v) for k, v in unknown.items()},
    )


# ---------------------------------------------------------------------------- attaching
def vote_vocabulary(labels: Sequence[str], classes: Sequence[str] = ()) -> tuple[str, ...]:
    """Vote names: the emotions among ``labels`` and ``classes`` in canonical order, then the non-emotions."""
    present = set(labels) | set(classes)
    return tuple(e for e in EMOTIONS if e in present) + tuple(n for n in NON_EMOTIONS if n in present)


def _example(value: object, limit: int = 80) -> str:
    """A value quoted for an error message: plain text (not numpy's repr), cut to ``limit`` characters."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _image_key(text: str) -> str:
    """The file name an image reference points at (a path or a URL)."""
    parsed = urlparse(text)
    name = unquote(parsed.path) if parsed.scheme in ("http", "https", "file", "s3", "gs") else text
    return PurePosixPath(name.replace("\\", "/")).name


def match_images(dataset: FaceDataset, references: Sequence[str]) -> np.ndarray:
    """Dataset index of each image reference (-1 when not in the dataset).

    A reference matches a dataset path exactly, or else by file name when that name is unique
    in the dataset (URLs are matched by the file name at the end of their path).
    """
    exact = {p: i for i, p in enumerate(dataset.path)}
    names = pd.Series([_image_key(p) for p in dataset.path])
    unique = names[~names.duplicated(keep=False)]
    by_name = dict(zip(unique.values, unique.index))
    return np.array([exact.get(r, by_name.get(_image_key(r), -1)) for r in references], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class AnswerTable:
    """Answers as arrays over N images: vote counts and who answered what.

    Attributes:
        votes: int16 (N, V) counts over ``vote_names``.
        answer_worker: int32 (N, K) index into ``workers`` per answer slot (-1: none).
        answer_label: int16 (N, K) index into ``vote_names`` per answer slot (-1: none).
        vote_names, workers: the names the indices refer to.
    """

    votes: np.ndarray
    answer_worker: np.ndarray
    answer_label: np.ndarray
    vote_names: tuple[str, ...]
    workers: tuple[str, ...]

    def long(self) -> pd.DataFrame:
        """Long format with the image as its row index: ``image``, ``worker``, ``label``."""
        image, slot = np.nonzero(self.answer_worker >= 0)
        return pd.DataFrame({"image": image, "worker": np.asarray(self.workers)[self.answer_worker[image, slot]],
                             "label": np.asarray(self.vote_names)[self.answer_label[image, slot]]})


def tabulate_answers(frame: pd.DataFrame, rows: np.ndarray, n_images: int, classes: Sequence[str] = ()
                     ) -> AnswerTable:
    """The answers of ``frame`` (checked long format) about images ``rows`` (index per answer) as arrays."""
    vote_names = vote_vocabulary(frame["label"].unique(), classes)
    workers = tuple(sorted(frame["worker"].unique()))
    label_code = frame["label"].map({n: j for j, n in enumerate(vote_names)}).to_numpy()
    worker_code = frame["worker"].map({w: j for j, w in enumerate(workers)}).to_numpy()
    rows = np.asarray(rows, dtype=np.int64)
    votes = np.zeros((n_images, len(vote_names)), dtype=np.int16)
    np.add.at(votes, (rows, label_code), 1)
    slot = pd.Series(rows).groupby(rows).cumcount().to_numpy()
    width = int(slot.max()) + 1 if len(slot) else 1
    answer_worker = np.full((n_images, width), -1, dtype=np.int32)
    answer_label = np.full((n_images, width), -1, dtype=np.int16)
    answer_worker[rows, slot] = worker_code
    answer_label[rows, slot] = label_code
    return AnswerTable(votes, answer_worker, answer_label, vote_names, workers)


@dataclass(frozen=True)
class AttachReport:
    """What attaching answers did: answers used, answers naming images not in the dataset, coverage."""

    used: int
    not_in_dataset: int
    not_in_dataset_examples: tuple[str, ...]
    images_answered: int
    images: int
    unanswered_note: str = ""  # what the images without answers are, where the source says

    def summary(self) -> str:
        text = (f"{self.used} answers attached to {self.images_answered} of {self.images} images")
        if self.unanswered_note and self.images_answered < self.images:
            text += f"; the other {self.images - self.images_answered}: {self.unanswered_note}"
        if self.not_in_dataset:
            text += (f"; {self.not_in_dataset} answers name images not in the dataset "
                     f"(e.g. {', '.join(self.not_in_dataset_examples)})")
        return text


def attach_answers(dataset: FaceDataset, answers: Answers) -> tuple[FaceDataset, AttachReport]:
    """The dataset with the answers as votes and worker/label matrices (see the module docstring)."""
    frame = answers.frame
    index = match_images(dataset, frame["image"].tolist())
    outside = index < 0
    if outside.all():
        raise AnswersError(f"none of the {len(frame)} answers names an image of the dataset "
                           f"(e.g. {_example(frame['image'].iloc[0])}; dataset paths look like "
                           f"{_example(dataset.path[0])}); "
                           "answers match a dataset path exactly or by file name")
    used, rows = frame[~outside], index[~outside]
    table = tabulate_answers(used, rows, len(dataset), dataset.classes)
    attached = replace(
        dataset,
        extras={**dataset.extras, "votes": table.votes, "answer_worker": table.answer_worker,
                "answer_label": table.answer_label},
        meta={**dataset.meta, "vote_names": list(table.vote_names), "workers": list(table.workers),
              "answers": {"source": answers.source, "layout": answers.layout, "dropped": answers.dropped}},
    )
    report = AttachReport(
        used=int(len(used)), not_in_dataset=int(outside.sum()),
        not_in_dataset_examples=tuple(frame.loc[outside, "image"].drop_duplicates().head(3)),
        images_answered=int(np.unique(rows).size), images=len(dataset),
    )
    return attached, report


def answers_of(dataset: FaceDataset) -> pd.DataFrame:
    """The long-format answers (image index, worker, label name) attached by :func:`attach_answers`."""
    if "answer_worker" not in dataset.extras:
        raise AnswersError("this dataset carries vote counts but no worker identities (e.g. FER+); "
                           "methods that model workers need answers attached with `emofx labels import --answers`")
    return AnswerTable(dataset.extras["votes"], dataset.extras["answer_worker"], dataset.extras["answer_label"],
                       tuple(dataset.meta["vote_names"]), tuple(dataset.meta["workers"])).long()


# ---------------------------------------------------------------------------- vote counts


def attach_ferplus_votes(dataset: FaceDataset, ferplus: str | os.PathLike) -> tuple[FaceDataset, AttachReport]:
    """FER+ vote counts joined to a FER2013 image-folder dataset through ``ferplus_to_fer2013.csv``.

    ``ferplus`` is the FER+ folder (``fer2013new.csv`` and ``ferplus_to_fer2013.csv``). The
    dataset's paths must end in the FER2013 layout (``train/angry/Training_1426440.jpg``).
    A FER2013 file that two FER+ rows map to (FER2013 repeats some images) gets the first row's votes.
    """
    folder = Path(ferplus).expanduser()
    votes_csv, mapping_csv = folder / "fer2013new.csv", folder / "ferplus_to_fer2013.csv"
    for needed in (votes_csv, mapping_csv):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; pass the FER+ folder holding fer2013new.csv and "
                                    "ferplus_to_fer2013.csv")
    _, counts = read_ferplus_votes(votes_csv)
    mapping = pd.read_csv(mapping_csv, dtype=str, keep_default_na=False)
    if not {"row", "fer2013_file"} <= set(mapping.columns):
        raise AnswersError(f"{mapping_csv}: expected the columns row and fer2013_file; found {list(mapping.columns)}")
    mapping = mapping.drop_duplicates("fer2013_file", keep="first")
    file_row = dict(zip(mapping["fer2013_file"], mapping["row"].astype(int)))
    tail = ["/".join(PurePosixPath(p.replace("\\", "/")).parts[-3:]) for p in dataset.path]
    rows = np.array([file_row.get(t, -1) for t in tail], dtype=np.int64)
    if (rows < 0).all():
        raise AnswersError(f"no dataset path matches a FER2013 file of {mapping_csv.name} (dataset paths look "
                           f"like {_example(dataset.path[0])}; expected .../train/angry/Training_1426440.jpg)")
    votes = np.where(rows[:, None] >= 0, counts[np.maximum(rows, 0)], 0).astype(np.int16)
    vote_names = [canonical_answer(c) for c in FERPLUS_VOTE_COLUMNS]
    attached = replace(dataset, extras={**_without_answers(dataset.extras), "votes": votes, "ferplus_row": rows},
                       meta={**_without_answers(dataset.meta), "vote_names": vote_names,
                             "answers": {"source": str(votes_csv), "layout": FERPLUS_LAYOUT}})
    # FER+ rates every FER2013 image; those outside the dataset (a subset) are not answers left out.
    report = AttachReport(used=int(votes.sum()), not_in_dataset=0, not_in_dataset_examples=(),
                          images_answered=int((rows >= 0).sum()), images=len(dataset),
                          unanswered_note="FER+ left them out (not a face, or unusable): aggregating drops them")
    return attached, report


def attach_observer_votes(dataset: FaceDataset) -> tuple[FaceDataset, AttachReport]:
    """Observer proportions (the Taiwanese set's ``extras["ratings"]`` x ``extras["observers"]``) as vote counts.

    Images posing an emotion the observers could not choose (neutral) get no votes: they stay
    unanswered and keep their label, where forced-choice votes would relabel them."""
    if "ratings" not in dataset.extras or "observers" not in dataset.extras or "rating_names" not in dataset.meta:
        raise AnswersError("the dataset carries no observer ratings; prepare the Taiwanese set with "
                           "`emofx prepare ... --format taiwanese` (ratings are attached from Image_info.xls)")
    ratings = np.nan_to_num(np.asarray(dataset.extras["ratings"], np.float64))
    observers = np.nan_to_num(np.asarray(dataset.extras["observers"], np.float64))
    votes = np.rint(ratings * observers[:, None]).astype(np.int16)
    votes[~np.isin(dataset.label_names, list(dataset.meta["rating_names"]))] = 0
    attached = replace(dataset, extras={**_without_answers(dataset.extras), "votes": votes},
                       meta={**_without_answers(dataset.meta), "vote_names": list(dataset.meta["rating_names"]),
                             "answers": {"source": dataset.meta.get("ratings_file", ""), "layout": "observer-proportions"}})
    answered = int((votes.sum(axis=1) > 0).sum())
    return attached, AttachReport(used=int(votes.sum()), not_in_dataset=0, not_in_dataset_examples=(),
                                  images_answered=answered, images=len(dataset))


def _without_answers(fields: dict) -> dict:
    """``fields`` (a dataset's extras or meta) without an earlier import's worker answers: vote counts
    attached now replace them, and their label indices would be read against the new vote names."""
    return {k: v for k, v in fields.items() if k not in ("answer_worker", "answer_label", "workers")}


def vote_matrix(dataset: FaceDataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, V) vote counts and their names; an error naming the command when the dataset has none."""
    if "votes" not in dataset.extras or "vote_names" not in dataset.meta:
        raise AnswersError("the dataset carries no crowd answers or votes; attach them first with "
                           "`emofx labels import DATA.npz --answers answers.csv` (or --ferplus / --observers)")
    return np.asarray(dataset.extras["votes"]), tuple(dataset.meta["vote_names"])

