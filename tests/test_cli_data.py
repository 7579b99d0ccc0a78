"""End to end: emofx prepare, merge and info on tiny inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from emofx.cli import main
from emofx.data.dataset import FaceDataset
from emofx.data.synthetic import make_synthetic

FER_CLASSES = ("angry", "happy", "surprise")


pytestmark = pytest.mark.usefixtures("private_cache")  # faces prepared here are cached in the test's folder


@pytest.fixture
def fer_folder(tmp_path, shared_dataset):
    """Two FER2013 training images per class for three classes, as symlinks."""
    shared = shared_dataset("fer2013")
    root = tmp_path / "fer"
    for cls in FER_CLASSES:
        (root / "train" / cls).mkdir(parents=True)
        for f in sorted((shared / "train" / cls).iterdir())[:2]:
            (root / "train" / cls / f.name).symlink_to(f)
    return root


def info_json(path, capsys) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # exactly one JSON object


def test_prepare_then_info(tmp_path, fer_folder, capsys):
    out = tmp_path / "fer.npz"
    assert main(["prepare", str(fer_folder), "--format", "folder", "--out", str(out), "--culture", "web",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "6 images 48x48, 3 classes" in printed and "skipped: 0" in printed
    info = info_json(out, capsys)
    assert info["n"] == 6 and info["counts"] == {"angry": 2, "happy": 2, "surprised": 2}
    assert info["cultures"] == {"web": 6} and info["splits"] == {"Training": 6} and info["format"] == "folder"
    assert main(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "images     6 of 48x48 pixels" in table and "surprised" in table and "landmarks  none" in table


def test_info_on_a_directory_that_holds_no_run_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no emofx run (neither metrics.json nor training_state.msgpack at or below it)" in err
    assert err.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "face.JPG").write_bytes(b"")  # a folder of images: says how to make a dataset of it
    assert main(["info", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder of images, not a dataset or a run: make a dataset of it with `emofx prepare" \
        in capsys.readouterr().err


def test_info_on_a_path_that_does_not_exist_names_what_it_accepts(tmp_path, capsys):
    assert main(["info", str(tmp_path / "runs" / "fer2013")]) == 2
    err = capsys.readouterr().err
    assert f"nothing at {tmp_path / 'runs' / 'fer2013'}: give a dataset file" in err and "a folder of runs" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_to_overwrite_or_write_into_the_source(tmp_path, fer_folder, capsys):
    out = tmp_path / "fer.npz"
    args = ["prepare", str(fer_folder), "--format", "folder", "--no-progress", "--out"]
    assert main(args + [str(out)]) == 0
    before = out.read_bytes()
    assert main(args + [str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(args + [str(out), "--overwrite", "--size", "32"]) == 0
    assert FaceDataset.load(out).image_shape == (32, 32)
    assert main(args + [str(fer_folder / "inside.npz")]) == 2
    assert "inside the source" in capsys.readouterr().err
    assert not (fer_folder / "inside.npz").exists()


def test_prepare_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nowhere"), "--format", "kdef", "--out", str(tmp_path / "k.npz")]) == 2
    err = capsys.readouterr().err
    assert (err.startswith("emofx prepare: error: KDEF folder") and "does not exist" in err
            and len(err.splitlines()) == 1)
    assert main(["prepare", "synthetic", "--format", "synthetic", "--out", str(tmp_path / "s.npz"),
                 "--margin", "0.2"]) == 2
    assert "--margin does not apply to --format synthetic" in capsys.readouterr().err
    assert main(["prepare", "synthetic", "--format", "synthetic", "--out", str(tmp_path / "s.npz"),
                 "--culture", " "]) == 2
    assert "--culture is empty" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()
    assert main(["prepare", "synthetic", "--format", "synthetic", "--out", str(tmp_path / "s.npz"),
                 "--views", "1"]) == 2  # named as on the command line, not as the loader's keyword
    assert "--views does not apply to --format synthetic" in capsys.readouterr().err


def test_prepare_kdef_slice(tmp_path, shared_dataset, capsys):
    out = tmp_path / "kdef.npz"
    assert main(["prepare", str(shared_dataset("kdef/frontal")), "--format", "kdef", "--out", str(out),
                 "--limit", "7", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "7 images 48x48" in printed and "\n  landmarks: " in printed and "aligned" in printed
    info = info_json(out, capsys)
    assert info["n"] == 7 and info["cultures"] == {"Swedish": 7} and info["subjects"] >= 2
    blank = ["prepare", str(shared_dataset("kdef/frontal")), "--format", "kdef", "--out", str(tmp_path / "b.npz")]
    assert main([*blank, "--angles", ""]) == 2  # an unset shell variable: refused, not the default angles
    assert "no KDEF angle given" in capsys.readouterr().err and not (tmp_path / "b.npz").exists()


def test_prepare_synthetic_is_reproducible(tmp_path, capsys):
    pytest.importorskip("emofx.data.synthetic")
    outs = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for out in outs:
        assert main(["prepare", "synthetic", "--format", "synthetic", "--dialect", "eyes", "--n-per-class", "4",
                     "--seed", "3", "--out", str(out)]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()  # same seed, identical bytes
    a, b = (FaceDataset.load(o) for o in outs)
    assert a.counts() == {c: 4 for c in a.classes} and "region_masks" in a.extras
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.extras["region_masks"], b.extras["region_masks"])


def test_merge_two_cultures_and_resize(tmp_path, fer_folder, capsys):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    main(["prepare", str(fer_folder), "--format", "folder", "--out", str(first), "--culture", "X", "--no-progress"])
    main(["prepare", str(fer_folder), "--format", "folder", "--out", str(second), "--culture", "Y", "--size", "32",
          "--no-progress"])
    capsys.readouterr()
    merged = tmp_path / "ab.npz"
    assert main(["merge", str(first), str(second), "--out", str(merged)]) == 2
    assert "different sizes" in capsys.readouterr().err and not merged.exists()
    assert main(["merge", str(first), str(second), "--out", str(merged), "--size", "48"]) == 0
    assert "wrote" in capsys.readouterr().out
    info = info_json(merged, capsys)
    assert info["n"] == 12 and info["cultures"] == {"X": 6, "Y": 6} and info["image_shape"] == [48, 48]
    assert main(["info", str(merged)]) == 0
    assert f"merged from {fer_folder}, {fer_folder}" in capsys.readouterr().out  # where each part came from
    pooled = tmp_path / "pooled.npz"
    assert main(["merge", str(first), str(second), "--out", str(pooled), "--size", "32", "--culture", "XY"]) == 0
    capsys.readouterr()
    assert info_json(pooled, capsys)["cultures"] == {"XY": 12}
    assert main(["merge", str(first), "--out", str(first), "--overwrite"]) == 2
    capsys.readouterr()
    marked = FaceDataset.load(first)
    marked.extras["agreement"] = np.linspace(0, 1, len(marked)).astype(np.float32)  # as the Taiwanese set's ratings
    marked.save(tmp_path / "rated.npz")
    assert main(["merge", str(tmp_path / "rated.npz"), str(second), "--out", str(tmp_path / "m.npz"),
                 "--size", "48"]) == 0
    assert "left out per-image extras that not every dataset has (or has in another shape): agreement" in \
        capsys.readouterr().out
    assert "agreement" not in FaceDataset.load(tmp_path / "m.npz").extras
    (tmp_path / "copy.npz").write_bytes(first.read_bytes())  # the same images under another file name
    assert main(["merge", str(first), str(tmp_path / "copy.npz"), "--out", str(tmp_path / "twice.npz")]) == 0
    assert "note: 6 images repeat another image's pixels; a split may put copies in both training and test" in \
        capsys.readouterr().out


def test_help_lists_the_environment_variables_every_command_reads(capsys):
    from emofx.cli import ENVIRONMENT
    from emofx.data.paths import CACHE_ENV, DATA_ENV
    from emofx.data.progress import PROGRESS_ENV
    from emofx.nets.allocator import TUNED_MALLOC_ENV
    from emofx.nets.compilation import COMPILATION_CACHE_ENV
    from emofx.nets.precision import PRECISION_ENV

    # The help spells the names out (to stay light); they must be the ones the modules read.
    assert set(ENVIRONMENT) == {DATA_ENV, CACHE_ENV, PRECISION_ENV, COMPILATION_CACHE_ENV, TUNED_MALLOC_ENV,
                                PROGRESS_ENV}
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert "environment variables (every command):" in shown
    for name in ENVIRONMENT:
        assert f"  {name} " in shown


def test_damaged_inputs_and_folders_as_outputs_are_one_line_errors(tmp_path, capsys):
    from emofx.data.synthetic import make_synthetic

    data = make_synthetic("eyes", n_per_class=2, seed=0, size=16, classes=("happy", "sad")).save(tmp_path / "a.npz")
    folder = tmp_path / "taken.npz"
    folder.mkdir()
    assert main(["merge", str(data), str(data), "--out", str(folder), "--overwrite"]) == 2
    assert "taken.npz is a folder (given as --out)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "taken.npz"]  # no partial file, folder kept

    with np.load(data) as stored:  # the same dataset without its labels, and one from a future emofx
        arrays = {name: stored[name] for name in stored.files}
    header = json.loads(str(arrays["__emofx__"]))
    np.savez(tmp_path / "nolabels.npz", **{name: a for name, a in arrays.items() if name != "labels"})
    np.savez(tmp_path / "future.npz", **{**arrays, "__emofx__": np.array(json.dumps({**header, "version": 99}))})
    assert main(["info", str(tmp_path / "nolabels.npz")]) == 2
    assert "is a damaged emofx dataset: it lacks labels" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "future.npz")]) == 2
    assert "format version 99, which this emofx (reading up to version 1) cannot read" in capsys.readouterr().err

    assert main(["merge", str(data), str(data), "--out", str(tmp_path / "twice.npz")]) == 2
    assert "is given twice" in capsys.readouterr().err and not (tmp_path / "twice.npz").exists()
    other = make_synthetic("eyes", n_per_class=3, seed=0, size=16, classes=("happy", "sad"))  # same paths, other faces
    assert main(["merge", str(data), str(other.save(tmp_path / "b.npz")), "--out", str(tmp_path / "ab.npz")]) == 0
    assert "note: 4 image paths occur more than once" in capsys.readouterr().out
    assert main(["quickstart", "--out", str(data)]) == 2  # the system's own error, path first, no "[Errno 20]"
    assert capsys.readouterr().err.strip().endswith(f"error: {data}: not a directory")


def test_output_read_by_a_program_that_stops_early_ends_quietly(tmp_path):
    """`emofx info FILE | head -1`: the reader gone, the command stops without a traceback or an error line."""
    import subprocess
    import sys

    data = make_synthetic("universal", n_per_class=2, classes=("happy", "sad")).save(tmp_path / "a.npz")
    reader, writer = os.pipe()
    os.close(reader)  # every write to the pipe now fails, as after `head` has exited
    try:
        done = subprocess.run([sys.executable, "-m", "emofx", "info", str(data)], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)
    assert done.returncode == 141 and done.stderr == ""


def test_a_usage_error_is_one_line_with_where_to_look(capsys):
    for argv, said in ((["train", "data.npz"], "emofx train: error: the following arguments are required: --out"),
                       (["labels", "import"], "emofx labels import: error: the following arguments are required"),
                       (["nope"], "emofx: error: argument COMMAND: invalid choice: 'nope'")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(said) and len(err.strip().splitlines()) == 1, err
        assert "--help` lists the options" in err and "usage:" not in err


def test_ctrl_c_while_a_command_loads_is_one_line(monkeypatch, capsys):
    """The command's modules are imported before it runs (seconds): a Ctrl-C then is not a traceback."""
    import emofx.cli as cli

    def slow_import(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_command_module", slow_import)
    assert main(["info", "x.npz"]) == 130
    assert capsys.readouterr().err == "emofx: interrupted\n"
