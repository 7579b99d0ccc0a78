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

import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import ALIASES, EMOTIONS
from emofx.data.loaders.common import SourceError
from emofx.data.loaders.fer2013 import FERPLUS_VOTE_COLUMNS, read_ferplus_mapping, read_ferplus_votes

NON_EMOTIONS: tuple[str, ...] = ("unknown", "not_face")
FERPLUS_LAYOUT = "ferplus-votes"  # answers.layout of FER+ vote counts: FER+ rated every FER2013 image
_NON_EMOTION_ALIASES: dict[str, str] = {
    "unknown": "unknown", "uncertain": "unknown", "unsure": "unknown", "none": "unknown",
    "not_face": "not_face", "nf": "not_face", "not a face": "not_face", "notface": "not_face", "no face": "not_face",
}
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
    columns: dict[str, str] = field(default_factory=dict)  # the file's column read for each role

    def summary(self) -> str:
        """One line: what was read (from which columns) and what was left out."""
        text = (f"{len(self.frame)} answers from {self.frame['worker'].nunique()} workers on "
                f"{self.frame['image'].nunique()} images ({self.layout} layout")
        if self.columns:
            text += "; " + ", ".join(f"{role} from {col!r}" for role, col in self.columns.items())
        text += ")"
        left = {k: v for k, v in self.dropped.items() if v}
        if left:
            text += "; left out: " + ", ".join(f"{k} {v}" for k, v in left.items())
        if self.unknown_labels:
            text += (" (unknown labels: "
                     + ", ".join(f"{k!r} x{v}" for k, v in list(self.unknown_labels.items())[:8]) + ")")
        return text


def _plain_column(columns: Sequence[str], role: str, path: Path) -> str | None:
    """The one column of a plain CSV that holds ``role`` (None when none does); two candidates are refused, as
    reading the wrong one (a manifest's ``emotion`` beside the worker's ``answer``) would be silent."""
    lowered = {c.strip().lower(): c for c in columns}
    found = [lowered[n] for n in _PLAIN_NAMES[role] if n in lowered]
    if len(found) > 1:
        raise AnswersError(f"{path}: the columns {found} could each be the answers' {role}; rename or drop all "
                           f"but one (or name the one to use {role!r})")
    return found[0] if found else None


def _csv_text(path: Path) -> str:
    """The file's text, refused with the line of the first byte that is not UTF-8 (a BOM is dropped)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise AnswersError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}); save the file "
                           "as UTF-8 (CSV UTF-8 in a spreadsheet)") from None


def _separator(text: str) -> str:
    """Commas, or the tab or semicolon a header without commas is split by (spreadsheets in some locales)."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    return next((sep for sep in ("\t", ";") if sep in header), ",")


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
    text = _csv_text(path)
    try:
        raw = pd.read_csv(io.StringIO(text), sep=_separator(text), dtype=str, keep_default_na=False,
                          skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise AnswersError(f"{path} is empty; expected a CSV with columns image, worker, label[, time] "
                           "or a Mechanical Turk batch-results file") from None
    except pd.errors.ParserError as err:
        raise AnswersError(f"{path} is not a readable CSV ({err})") from None
    if raw.empty:
        raise AnswersError(f"{path} has a header ({', '.join(map(str, raw.columns))}) but no answer rows")
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
        mapping = {role: _plain_column(columns, role, path) for role in _PLAIN_NAMES}
        missing = [role for role in ("image", "worker", "label") if mapping[role] is None]
        if missing:
            raise AnswersError(f"{path}: no column for {missing}; expected image, worker, label[, time] "
                               f"or a Mechanical Turk batch-results file (columns found: {columns})")
    frame = pd.DataFrame({role: (raw[col] if col else np.nan) for role, col in mapping.items()})
    answers = answers_from_frame(frame, layout=layout, source=str(path))
    return replace(answers, dropped={**answers.dropped, "rejected": rejected},
                   columns={role: col for role, col in mapping.items() if col})


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
    # NaN/None cells, not the text "None" (an answer: unknown) or "nan"; a worker "NA" is R's write.csv's missing value
    missing_value = (frame[fields].isna().any(axis=1) | (frame["worker"].astype(str).str.strip() == "NA")).to_numpy()
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
    """What attaching answers did: answers used, answers left out (naming no image of the dataset, or a
    worker's second answer to an image named another way), coverage, and what the new answers replace."""

    used: int
    not_in_dataset: int
    not_in_dataset_examples: tuple[str, ...]
    images_answered: int
    images: int
    unanswered_note: str = ""  # what the images without answers are, where the source says
    repeated: int = 0  # a worker's further answers to one image under another name (path, URL, file name)
    ambiguous: int = 0  # of not_in_dataset: answers naming a file name that several dataset images share
    replaced: str = ""  # the answers and aggregation an earlier import left on the dataset, now replaced

    def summary(self) -> str:
        """One line saying how many answers were attached, and what was left out or replaced."""
        text = (f"{self.used} answers attached to {self.images_answered} of {self.images} images")
        if self.unanswered_note and self.images_answered < self.images:
            text += f"; the other {self.images - self.images_answered}: {self.unanswered_note}"
        if self.not_in_dataset:
            text += (f"; {self.not_in_dataset} answers name images not in the dataset "
                     f"(e.g. {', '.join(self.not_in_dataset_examples)})")
        if self.ambiguous:
            text += (f", {self.ambiguous} of them by a file name several dataset images share (give the image's "
                     "path as the dataset lists it)")
        if self.repeated:
            text += (f"; {self.repeated} answers left out as a worker's second answer to an image named another "
                     "way (path, URL or file name)")
        if self.replaced:
            text += f"; replaces {self.replaced}"
        return text


def _ambiguous_names(dataset: FaceDataset, references: Sequence[str]) -> np.ndarray:
    """Whether each reference is a bare file name that several dataset images share (so it matches none)."""
    names = pd.Series([_image_key(p) for p in dataset.path])
    shared = set(names[names.duplicated(keep=False)])
    exact = set(dataset.path)
    return np.array([r not in exact and _image_key(r) in shared for r in references], dtype=bool)


def attach_answers(dataset: FaceDataset, answers: Answers) -> tuple[FaceDataset, AttachReport]:
    """The dataset with the answers as votes and worker/label matrices (see the module docstring).

    Answers are matched to images first, so a worker's answers to one image under two names (a path and
    a URL) count once; answers an earlier import attached, and their aggregation, are replaced."""
    frame = answers.frame
    index = match_images(dataset, frame["image"].tolist())
    outside = index < 0
    if outside.all():
        raise AnswersError(f"none of the {len(frame)} answers names an image of the dataset "
                           f"(e.g. {_example(frame['image'].iloc[0])}; dataset paths look like "
                           f"{_example(dataset.path[0])}); "
                           "answers match a dataset path exactly or by file name")
    used = frame[~outside].assign(row=index[~outside])
    again = used.duplicated(["row", "worker"], keep="first").to_numpy()
    used = used[~again]
    table = tabulate_answers(used, used["row"].to_numpy(), len(dataset), dataset.classes)
    extras, meta = _without_answers(dataset)
    attached = replace(
        dataset,
        extras={**extras, "votes": table.votes, "answer_worker": table.answer_worker,
                "answer_label": table.answer_label},
        meta={**meta, "vote_names": list(table.vote_names), "workers": list(table.workers),
              "answers": {"source": answers.source, "layout": answers.layout,
                          "dropped": {**answers.dropped, "repeated": answers.dropped.get("repeated", 0)
                                      + int(again.sum())}}},
    )
    report = AttachReport(
        used=int(len(used)), not_in_dataset=int(outside.sum()),
        not_in_dataset_examples=tuple(frame.loc[outside, "image"].drop_duplicates().head(3)),
        images_answered=int(used["row"].nunique()), images=len(dataset), repeated=int(again.sum()),
        ambiguous=int(_ambiguous_names(dataset, frame.loc[outside, "image"].tolist()).sum()),
        replaced=_earlier_answers(dataset),
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


def _fer2013_root(paths: Sequence[str] | np.ndarray) -> Path | None:
    """The FER2013 image folder most of ``paths`` (``<root>/train/angry/Training_1426440.jpg``) lie in."""
    roots = pd.Series([str(Path(p).parents[2]) for p in paths if len(Path(p).parents) > 2], dtype=object)
    return Path(roots.mode().iloc[0]) if len(roots) else None


def attach_ferplus_votes(dataset: FaceDataset, ferplus: str | os.PathLike) -> tuple[FaceDataset, AttachReport]:
    """FER+ vote counts joined to a FER2013 image-folder dataset through ``ferplus_to_fer2013.csv``.

    ``ferplus`` is the FER+ folder (``fer2013new.csv`` and ``ferplus_to_fer2013.csv``). A dataset path
    matches a FER2013 file by its last three parts (``train/angry/Training_1426440.jpg``, in any letter
    case: a ``train/Happy/`` folder matches ``train/happy/``). The two FER+ rows of an image FER2013 holds
    twice go to its two files (:func:`~emofx.data.loaders.fer2013.read_ferplus_mapping`); a file that still
    shares a row with another (its copy's row was not found) gets that row's votes too.
    """
    folder = Path(ferplus).expanduser()
    votes_csv, mapping_csv = folder / "fer2013new.csv", folder / "ferplus_to_fer2013.csv"
    for needed in (votes_csv, mapping_csv):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; pass the FER+ folder holding fer2013new.csv and "
                                    "ferplus_to_fer2013.csv")
    _, counts = read_ferplus_votes(votes_csv)
    try:
        mapping = read_ferplus_mapping(mapping_csv, _fer2013_root(dataset.path))
    except SourceError as err:
        raise AnswersError(str(err)) from None
    mapping = mapping.drop_duplicates("fer2013_file", keep="first")
    file_row = dict(zip(mapping["fer2013_file"].str.lower(), mapping["row"]))
    tails = ["/".join(PurePosixPath(p.replace("\\", "/")).parts[-3:]).lower() for p in dataset.path]
    rows = np.array([file_row.get(t, -1) for t in tails], dtype=np.int64)
    if (rows < 0).all():
        raise AnswersError(f"no dataset path matches a FER2013 file of {mapping_csv.name} (dataset paths look "
                           f"like {_example(dataset.path[0])}; expected .../train/angry/Training_1426440.jpg)")
    votes = np.where(rows[:, None] >= 0, counts[np.maximum(rows, 0)], 0).astype(np.int16)
    vote_names = [canonical_answer(c) for c in FERPLUS_VOTE_COLUMNS]
    extras, meta = _without_answers(dataset)
    attached = replace(dataset, extras={**extras, "votes": votes, "ferplus_row": rows},
                       meta={**meta, "vote_names": vote_names, "answers": {"source": str(votes_csv),
                                                                          "layout": FERPLUS_LAYOUT}})
    # FER+ rates every FER2013 image; those outside the dataset (a subset) are not answers left out.
    report = AttachReport(used=int(votes.sum()), not_in_dataset=0, not_in_dataset_examples=(),
                          images_answered=int((rows >= 0).sum()), images=len(dataset),
                          unanswered_note="no FER+ row names them (FER+ left out images that are not faces): "
                                          "aggregating drops them", replaced=_earlier_answers(dataset))
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
    extras, meta = _without_answers(dataset)
    attached = replace(dataset, extras={**extras, "votes": votes},
                       meta={**meta, "vote_names": list(dataset.meta["rating_names"]),
                             "answers": {"source": dataset.meta.get("ratings_file", ""),
                                         "layout": "observer-proportions"}})
    answered = int((votes.sum(axis=1) > 0).sum())
    return attached, AttachReport(used=int(votes.sum()), not_in_dataset=0, not_in_dataset_examples=(),
                                  images_answered=answered, images=len(dataset), replaced=_earlier_answers(dataset))


_ANSWER_FIELDS = ("votes", "vote_names", "answer_worker", "answer_label", "workers", "answers", "aggregation")
_AGGREGATED = ("agreement", "label_entropy", "label_proba", "n_answers")  # per image, where an aggregation made them


def _without_answers(dataset: FaceDataset) -> tuple[dict, dict]:
    """The dataset's extras and meta without an earlier import's answers and their aggregation: answers attached now
    replace them, and the aggregation's agreement and distribution would describe the old ones. An agreement no
    aggregation made (the Taiwanese set's, from its observers' ratings) stays."""
    dropped = _ANSWER_FIELDS + (_AGGREGATED if "aggregation" in dataset.meta else ())
    return ({k: v for k, v in dataset.extras.items() if k not in dropped},
            {k: v for k, v in dataset.meta.items() if k not in dropped})


def _earlier_answers(dataset: FaceDataset) -> str:
    """What attaching answers replaces on ``dataset`` ("" when it carries none), for the report."""
    if "votes" not in dataset.extras:
        return ""
    text = f"the {int(np.asarray(dataset.extras['votes']).sum())} answers attached before"
    if "aggregation" in dataset.meta:
        text += (f" and their aggregation ({dataset.meta['aggregation'].get('method', '?')}; the labels stay as "
                 "it set them until you aggregate again)")
    return text


def vote_matrix(dataset: FaceDataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, V) vote counts and their names; an error naming the command when the dataset has none."""
    if "votes" not in dataset.extras or "vote_names" not in dataset.meta:
        raise AnswersError("the dataset carries no crowd answers or votes; attach them first with "
                           "`emofx labels import DATA.npz --answers answers.csv` (or --ferplus / --observers)")
    return np.asarray(dataset.extras["votes"]), tuple(dataset.meta["vote_names"])

