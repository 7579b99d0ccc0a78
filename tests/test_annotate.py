"""Notebook 06's logic without a browser: the answer log, sessions, the widget, and emofx labels end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emofx.cli import main
from emofx.crowd.annotate import AnnotationSession, AnswerLog, annotation_widget, manifest_images, shortcut_keys
from emofx.crowd.answers import read_answers
from emofx.data.dataset import FaceDataset


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


def test_answer_log_is_resumable_and_shared_by_annotators(tmp_path):
    path = tmp_path / "answers.csv"
    images = ["a.png", "b.png", "c.png"]
    ann = AnnotationSession(AnswerLog(path), images, "ann", clock=Clock())
    assert ann.current == "a.png"
    ann.answer("happy")
    ann.answer_key("5")  # shortcut 5 = sad
    assert pd.read_csv(path)["label"].tolist() == ["happy", "sad"]  # written after every answer
    resumed = AnnotationSession(AnswerLog(path), images, "ann")
    assert resumed.current == "c.png"
    bob = AnnotationSession(AnswerLog(path), images, "bob", clock=Clock())
    assert bob.current == "a.png"
    bob.answer("Anger")
    log = AnswerLog(path)
    assert log.progress()["answers"].to_dict() == {"ann": 2, "bob": 1}
    answers = read_answers(path)  # the log is the plain long format
    assert answers.frame["worker"].tolist() == ["ann", "ann", "bob"]
    assert answers.frame["time"].tolist() == [1.5, 1.5, 1.5]


def test_annotators_answering_at_once_keep_each_others_answers_and_the_files_other_columns(tmp_path):
    path = tmp_path / "answers.csv"
    pd.DataFrame({"image": ["z.png"], "worker": ["eve"], "label": ["sad"], "time": [2.0],
                  "comment": ["blurry"]}).to_csv(path, index=False)
    ann, bob = AnswerLog(path), AnswerLog(path)  # two notebooks open on one shared file
    ann.record("a.png", "ann", "happy")
    bob.record("b.png", "bob", "sad")
    ann.record("c.png", "ann", "angry")
    saved = pd.read_csv(path, keep_default_na=False)
    assert sorted(zip(saved["image"], saved["worker"])) == [("a.png", "ann"), ("b.png", "bob"), ("c.png", "ann"),
                                                           ("z.png", "eve")]
    assert saved.set_index("image").loc["z.png", "comment"] == "blurry"


def test_a_correction_replaces_the_earlier_answer_and_bad_answers_write_nothing(tmp_path):
    path = tmp_path / "answers.csv"
    log = AnswerLog(path)
    log.record("a.png", "ann", "happy")
    log.record("a.png", "ann", "surprise")
    assert pd.read_csv(path)[["image", "label"]].values.tolist() == [["a.png", "surprised"]]
    before = path.read_bytes()
    with pytest.raises(ValueError, match="unknown label"):
        log.record("b.png", "ann", "bored")
    with pytest.raises(ValueError, match="annotator name"):
        log.record("b.png", " ", "happy")
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))


def test_log_refuses_a_file_that_is_not_an_answers_log(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="not an answers log"):
        AnswerLog(other)


def test_shortcuts_and_session_end(tmp_path):
    assert shortcut_keys(["happy", "sad"]) == {"1": "happy", "2": "sad"}
    session = AnnotationSession(AnswerLog(tmp_path / "a.csv", labels=["happy", "sad"]), ["x.png"], "ann")
    assert session.answer_key("z") == "x.png"  # unknown keys are ignored
    assert session.answer_key("2") is None
    with pytest.raises(ValueError, match="answered every image"):
        session.answer("happy")


def test_widget_buttons_and_shortcut_box_record_answers(tmp_path):
    pytest.importorskip("ipywidgets")
    images = []
    for i in range(2):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"f{i}.png")
        images.append(str(tmp_path / f"f{i}.png"))
    pd.DataFrame({"path": ["f0.png", "f1.png"]}).to_csv(tmp_path / "manifest.csv", index=False)
    assert manifest_images(tmp_path / "manifest.csv") == images
    session = AnnotationSession(AnswerLog(tmp_path / "answers.csv"), images, "ann")
    box = annotation_widget(session)
    status, picture, buttons, shortcut = box.children
    assert bytes(picture.value).startswith(b"\x89PNG")
    buttons.children[3].click()  # happy
    shortcut.value = "7"  # neutral
    assert "all 2 images answered" in status.value
    assert pd.read_csv(tmp_path / "answers.csv")["label"].tolist() == ["happy", "neutral"]


# ---------------------------------------------------------------------------- emofx labels
@pytest.fixture
def answered_dataset(tmp_path):
    pytest.importorskip("crowdkit")
    rng = np.random.default_rng(0)
    n = 60
    truth = rng.integers(3, size=n)
    classes = np.array(["happy", "sad", "angry"])
    dataset = FaceDataset.from_label_names(rng.integers(0, 255, (n, 8, 8)).astype(np.uint8), classes[truth],
                                           path=[f"/faces/f{i}.png" for i in range(n)])
    dataset.save(tmp_path / "data.npz")
    rows = []
    for i, t in enumerate(truth):
        for w in ("good1", "good2", "good3"):
            rows.append((f"f{i}.png", w, classes[t] if rng.random() < 0.9 else classes[(t + 1) % 3]))
        rows.append((f"f{i}.png", "spammer", classes[rng.integers(3)]))
    rows.append(("unknown_image.png", "good1", "happy"))
    pd.DataFrame(rows, columns=["image", "worker", "label"]).to_csv(tmp_path / "answers.csv", index=False)
    return tmp_path, classes[truth]


def test_labels_import_and_aggregate_end_to_end(answered_dataset, capsys):
    folder, truth = answered_dataset
    assert main(["labels", "import", str(folder / "data.npz"), "--answers", str(folder / "answers.csv"),
                 "--out", str(folder / "answers.npz")]) == 0
    out = capsys.readouterr().out
    assert "241 answers from 4 workers" in out and "1 answers name images not in the dataset" in out
    assert main(["labels", "aggregate", str(folder / "answers.npz"), "--method", "ds", "--out",
                 str(folder / "ds.npz"), "--table", str(folder / "ds.csv"), "--workers", str(folder / "w.csv"),
                 "--agreement", str(folder / "agreement.csv")]) == 0
    out = capsys.readouterr().out
    assert "Krippendorff's alpha" in out and "lowest: spammer" in out
    relabelled = FaceDataset.load(folder / "ds.npz")
    assert np.mean(relabelled.label_names == truth) > 0.95
    workers = pd.read_csv(folder / "w.csv", index_col="worker")
    assert workers["quality"].idxmin() == "spammer"
    assert set(pd.read_csv(folder / "agreement.csv")["class"]) == {"all", "happy", "sad", "angry"}
    assert main(["train", str(folder / "ds.npz"), "--out", str(folder / "run"), "--epochs", "1", "--split", "random",
                 "--weight-by-agreement", "--widths", "4,8", "--dense-units", "8", "--quiet",
                 "--batch-size", "16"]) == 0


def test_labels_bad_input_is_one_line(answered_dataset, capsys, monkeypatch):
    folder, _ = answered_dataset
    (folder / "empty.csv").write_text("")
    assert main(["labels", "import", str(folder / "data.npz"), "--answers", str(folder / "empty.csv"),
                 "--out", str(folder / "x.npz")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["labels", "import", str(folder / "data.npz"), "--answers", str(folder / "answers.csv"),
                 "--out", str(folder / "x.npz"), "--strict"]) == 2
    assert "strict mode" in capsys.readouterr().err and not (folder / "x.npz").exists()
    assert main(["labels", "aggregate", str(folder / "data.npz"), "--method", "ds",
                 "--out", str(folder / "x.npz")]) == 2
    assert "no crowd answers or votes" in capsys.readouterr().err
    assert main(["labels", "import", str(folder / "data.npz"), "--answers", str(folder / "answers.csv"),
                 "--out", str(folder / "a.npz")]) == 0
    assert main(["labels", "aggregate", str(folder / "a.npz"), "--out", str(folder / "m.npz"),
                 "--table", str(folder / "same.csv"), "--agreement", str(folder / "same.csv")]) == 2
    assert "given for two outputs" in capsys.readouterr().err and not (folder / "m.npz").exists()
    votes_only = FaceDataset.load(folder / "a.npz")
    FaceDataset(**{**votes_only.__dict__, "extras": {"votes": votes_only.extras["votes"]},
                   "meta": {"vote_names": votes_only.meta["vote_names"]}}).save(folder / "votes.npz")
    assert main(["labels", "aggregate", str(folder / "votes.npz"), "--out", str(folder / "v.npz"),
                 "--workers", str(folder / "w.csv")]) == 2
    assert "without worker identities" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "crowdkit.aggregation", None)  # crowd-kit not installed
    assert main(["labels", "aggregate", str(folder / "a.npz"), "--method", "glad", "--out", str(folder / "g.npz")]) == 2
    assert 'pip install "emofx[crowd]"' in capsys.readouterr().err


def test_the_notebooks_aggregation_cell_summarises_a_log(tmp_path):
    pytest.importorskip("crowdkit")
    from emofx.crowd.annotate import demo_manifest, summarise_answers

    images = manifest_images(demo_manifest(tmp_path / "demo", 6))
    assert len(images) == 6 and all(Path(p).is_file() for p in images)
    log = AnswerLog(tmp_path / "answers.csv")
    for worker, labels in {"ann": ["happy"] * 6, "bob": ["happy"] * 5 + ["sad"],
                           "cy": ["happy"] * 4 + ["sad"] * 2}.items():
        for image, label in zip(images, labels):
            log.record(image, worker, label)
    summary = summarise_answers(read_answers(log.path), "mv")
    assert summary.per_image.loc[images[5], "label"] == "sad"
    assert summary.per_image.loc[images[0], "agreement"] == pytest.approx(1.0)
    assert summary.workers.loc["ann", "agreement"] == pytest.approx(5 / 6)
    assert set(summary.agreement.index) == {"all", "happy", "sad"}


def test_notebook_06_runs_headless_and_aggregates_a_log(tmp_path):
    pytest.importorskip("crowdkit")
    papermill = pytest.importorskip("papermill")
    import nbformat

    from emofx.crowd.annotate import demo_manifest

    manifest = demo_manifest(tmp_path / "demo", 4)
    log = AnswerLog(tmp_path / "answers.csv")
    for worker in ("ann", "bob"):
        for image in manifest_images(manifest):
            log.record(image, worker, "happy")
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "06_annotate.ipynb"
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), progress_bar=False,
                               parameters={"manifest": str(manifest), "answers": str(log.path), "annotator": "cy",
                                           "output_dir": str(tmp_path / "out")})
    executed = nbformat.read(tmp_path / "out.ipynb", 4)
    text = "".join(str(o.get("data", {}).get("text/plain", "")) for cell in executed.cells
                   if cell.cell_type == "code" for o in cell.outputs)
    assert "4 images, 4 still to answer by cy" in text
    assert "krippendorff_alpha" in text
    results = json.loads((tmp_path / "out" / "results.json").read_text())  # standard JSON: no NaN token
    assert (results["images"], results["answers"], results["annotators"], results["method"]) == (4, 8, 2, "mv")
    assert results["krippendorff_alpha"] is None  # every answer "happy": agreement is undefined, NaN written as null
