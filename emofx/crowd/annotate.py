"""Annotation by hand: the answer log and the widget behind notebook 06.

:class:`AnswerLog` keeps one long-format answers CSV (``image, worker, label, time``, the
plain layout :func:`emofx.crowd.answers.read_answers` reads; other columns are kept) shared by
several annotators. Every answer re-reads the file under a lock (``.<name>.lock`` beside it), so
annotators answering at the same time keep each other's answers, and rewrites it atomically (a
temporary file renamed over it), so a crash never leaves half a file; reopening the log resumes
each annotator where they stopped. A second answer by the same annotator to the same image
replaces the first (a correction).

:func:`annotation_widget` shows the images of a manifest one by one with a button per emotion
and keyboard shortcuts (type the key into the shortcut box); it needs ``ipywidgets``.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
from filelock import FileLock

from emofx.crowd.answers import NON_EMOTIONS, Answers, canonical_answer, tabulate_answers
from emofx.data.emotions import EMOTIONS
from emofx.data.paths import atomic_write, install_command

if TYPE_CHECKING:
    import ipywidgets as widgets

LOG_COLUMNS: tuple[str, ...] = ("image", "worker", "label", "time")
DEFAULT_LABELS: tuple[str, ...] = EMOTIONS[:7] + NON_EMOTIONS


def shortcut_keys(labels: Sequence[str]) -> dict[str, str]:
    """Keyboard shortcut -> label: 1..9 then 0 for the first ten labels."""
    keys = [str(k) for k in range(1, 10)] + ["0"]
    if len(labels) > len(keys):
        raise ValueError(f"at most {len(keys)} labels have shortcuts; got {len(labels)}")
    return dict(zip(keys, labels))


class AnswerLog:
    """The answers CSV of an annotation project, written atomically after every answer."""

    def __init__(self, path: str | os.PathLike, labels: Sequence[str] = DEFAULT_LABELS) -> None:
        self.path = Path(path).expanduser()
        canonical = [canonical_answer(label) for label in labels]
        unknown = [label for label, c in zip(labels, canonical) if c is None]
        if unknown:
            raise ValueError(f"labels {unknown} are neither emotions ({', '.join(EMOTIONS)}) nor {NON_EMOTIONS}")
        self.labels = tuple(dict.fromkeys(canonical))
        self.frame = self._read()

    def _read(self) -> pd.DataFrame:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame(columns=list(LOG_COLUMNS))
        frame = pd.read_csv(self.path, dtype={"image": str, "worker": str, "label": str}, keep_default_na=False)
        missing = [c for c in LOG_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.path} is not an answers log (missing columns {missing}); choose another file")
        return frame

    def record(self, image: str, worker: str, label: str, seconds: float = float("nan")) -> None:
        """Store one answer (replacing this worker's earlier answer to the image) and write the file."""
        worker = worker.strip()
        if not worker:
            raise ValueError("an annotator name is needed (several annotators share one log)")
        canonical = canonical_answer(label)
        if canonical not in self.labels:
            raise ValueError(f"unknown label {label!r}; choose one of {', '.join(self.labels)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path.with_name(f".{self.path.name}.lock")):
            frame = self._read()  # as the other annotators left it
            kept = frame[~((frame["image"] == image) & (frame["worker"] == worker))]
            row = pd.DataFrame([{"image": image, "worker": worker, "label": canonical, "time": round(seconds, 2)}])
            self.frame = pd.concat([kept, row], ignore_index=True) if len(kept) else row
            self._write()

    def _write(self) -> None:
        atomic_write(self.path, self.frame.to_csv(index=False))

    def answered(self, worker: str) -> set[str]:
        """The images ``worker`` has answered."""
        return set(self.frame.loc[self.frame["worker"] == worker.strip(), "image"])

    def pending(self, images: Sequence[str], worker: str) -> list[str]:
        """The images of ``images`` that ``worker`` has not answered yet, in order (where to resume)."""
        done = self.answered(worker)
        return [image for image in images if image not in done]

    def progress(self) -> pd.DataFrame:
        """Answers per annotator."""
        return self.frame.groupby("worker").size().rename("answers").to_frame()


@dataclass
class AnnotationSession:
    """One annotator working through a list of images: the state the widget displays."""

    log: AnswerLog
    images: Sequence[str]
    worker: str
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.queue = self.log.pending(self.images, self.worker)
        self.shown_at = self.clock()

    @property
    def current(self) -> str | None:
        """The image to answer now (None when done)."""
        return self.queue[0] if self.queue else None

    def answer(self, label: str) -> str | None:
        """Record ``label`` for the current image and move on; returns the next image."""
        if self.current is None:
            raise ValueError(f"{self.worker} has answered every image")
        self.log.record(self.current, self.worker, label, self.clock() - self.shown_at)
        self.queue = self.queue[1:]
        self.shown_at = self.clock()
        return self.current

    def answer_key(self, key: str) -> str | None:
        """Answer by keyboard shortcut (see :func:`shortcut_keys`); unknown keys are ignored."""
        label = shortcut_keys(self.log.labels).get(key.strip()[-1:] if key.strip() else "")
        return self.answer(label) if label else self.current


@dataclass(frozen=True, eq=False)
class AnswerSummary:
    """Aggregated answers of an annotation log: per image, per worker, and agreement per class."""

    per_image: pd.DataFrame
    workers: pd.DataFrame | None
    agreement: pd.DataFrame


def summarise_answers(answers: Answers, method: str = "mv", *, seed: int = 0) -> AnswerSummary:
    """Aggregate long-format answers (e.g. :class:`AnswerLog`'s file) without a dataset, with agreement."""
    from emofx.crowd.aggregate import aggregate_votes
    from emofx.crowd.agreement import agreement_table

    images, rows = np.unique(answers.frame["image"].to_numpy(dtype=str), return_inverse=True)
    table = tabulate_answers(answers.frame, rows, len(images))
    result = aggregate_votes(table.votes, table.vote_names, table.long(), method, seed=seed)
    per_image = result.per_image().set_axis(pd.Index(images, name="image"))
    return AnswerSummary(per_image=per_image, workers=result.workers,
                         agreement=agreement_table(table.votes, table.vote_names))


def demo_manifest(folder: str | os.PathLike, n_images: int = 12, *, seed: int = 0) -> Path:
    """A small manifest of synthetic faces (PNG files in ``folder``) to try the annotation widget on."""
    from PIL import Image

    from emofx.data.synthetic import make_synthetic

    folder = Path(folder).expanduser()
    faces = make_synthetic(n_per_class=max(1, -(-n_images // 7)), seed=seed, images_per_subject_class=1)
    chosen = faces.subset(np.linspace(0, len(faces) - 1, n_images).round().astype(int))
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"face_{i:03d}.png" for i in range(len(chosen))]
    for name, image in zip(names, chosen.images):
        Image.fromarray(image).save(folder / name)
    manifest = folder / "manifest.csv"
    pd.DataFrame({"path": names, "emotion": chosen.label_names}).to_csv(manifest, index=False)
    return manifest


def manifest_images(manifest: str | os.PathLike) -> list[str]:
    """The image paths of a manifest CSV (``path`` column, e.g. from ``emofx collect``), resolved against its folder."""
    manifest = Path(manifest).expanduser()
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if "path" not in frame.columns:
        raise ValueError(f"{manifest} has no path column; expected a manifest such as emofx collect writes")
    return [str(p if Path(p).is_absolute() else manifest.parent / p) for p in frame["path"] if p.strip()]


def annotation_widget(session: AnnotationSession, *, image_width: int = 240) -> widgets.VBox:
    """An ipywidgets box: the current image, one button per label, a shortcut box and the progress."""
    try:
        import ipywidgets as widgets
    except ImportError:
        raise ImportError(f"the annotation widget needs ipywidgets: {install_command('crowd')}") from None
    keys = {label: key for key, label in shortcut_keys(session.log.labels).items()}
    picture = widgets.Image(format="png", width=image_width)
    status = widgets.HTML()
    shortcut = widgets.Text(placeholder="type a shortcut key", continuous_update=True,
                            layout=widgets.Layout(width="160px"))

    def show() -> None:
        done = len(session.images) - len(session.queue)
        if session.current is None:
            status.value = f"<b>{session.worker}</b>: all {len(session.images)} images answered"
            picture.value = b""
            return
        picture.value = _png(session.current)
        status.value = f"<b>{session.worker}</b>: {done} / {len(session.images)} &mdash; {Path(session.current).name}"

    def choose(label: str) -> None:
        if session.current is not None:
            session.answer(label)
        show()

    buttons = []
    for label in session.log.labels:
        button = widgets.Button(description=f"{label} ({keys[label]})")
        button.on_click(lambda _, label=label: choose(label))
        buttons.append(button)

    def on_key(change) -> None:
        if change["new"]:
            if session.current is not None:
                session.answer_key(change["new"])
            shortcut.value = ""
            show()

    shortcut.observe(on_key, names="value")
    show()
    return widgets.VBox([status, picture, widgets.HBox(buttons, layout=widgets.Layout(flex_flow="row wrap")),
                         shortcut])


def _png(path: str) -> bytes:
    """The image at ``path`` as PNG bytes for display (any format Pillow reads; a grey tile if unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.seek(0)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            return buffer.getvalue()
    except (OSError, ValueError):
        buffer = io.BytesIO()
        Image.fromarray(np.full((48, 48), 128, np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()
