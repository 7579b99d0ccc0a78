"""emofx collect: robust reading, duplicate groups across splits, filters, atomic output, --exclude."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from emofx.cli import main
from emofx.cli.collect import report_lines
from emofx.data import dedup
from emofx.data.collect import CollectConfig, collect, sharpness
from emofx.data.collection_files import write_collection
from emofx.data.dataset import FaceDataset
from emofx.data.synthetic import make_synthetic


pytestmark = pytest.mark.usefixtures("private_cache")  # faces prepared here are cached in the test's folder


@pytest.fixture
def web_folder(tmp_path):
    """Synthetic faces in a FER2013-like layout, with copies, re-encodings and broken files."""
    faces = make_synthetic(n_per_class=4, seed=0, classes=("happy", "sad"), images_per_subject_class=1)
    root = tmp_path / "web"
    for i, (image, label) in enumerate(zip(faces.images, faces.label_names)):
        split, prefix = ("train", "Training") if i % 4 else ("test", "PrivateTest")
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{prefix}_{i:03d}.png")
    first = root / "test" / "happy" / "PrivateTest_000.png"
    happy = root / "train" / "happy"
    (happy / "Training_copy.png").write_bytes(first.read_bytes())  # exact copy of a test image
    source = Image.open(first)
    source.save(happy / "Training_reencoded.webp", quality=90)  # near copy (WebP)
    source.save(happy / "Training_anim.gif", save_all=True, append_images=[source.rotate(30)])  # animated
    Image.fromarray(cv2.GaussianBlur(np.asarray(source), (9, 9), 4)).save(happy / "Training_blurred.png")
    (happy / "Training_empty.jpg").write_bytes(b"")
    (happy / "Training_notes.jpg").write_text("not an image")
    (happy / "Training_photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    return root


def test_collect_groups_duplicates_across_splits_and_keeps_the_test_copy(web_folder, monkeypatch):
    monkeypatch.setattr("emofx.data.collect.register_heif", lambda: False)
    result = collect(web_folder, CollectConfig(faces="cropped", min_face=0, near_threshold=4))
    reasons = dict(zip(result.dropped["source"].str.rsplit("/", n=1).str[-1], result.dropped["reason"]))
    assert reasons["Training_copy.png"] == "exact duplicate"
    assert reasons["Training_reencoded.webp"] == "near duplicate"
    assert reasons["Training_anim.gif"] == "near duplicate"  # its first frame is the test image
    assert reasons["Training_empty.jpg"] == "empty file"
    assert reasons["Training_notes.jpg"] == "not an image"
    assert reasons["Training_photo.heic"] == "HEIC/HEIF needs pillow-heif"
    assert "PrivateTest_000.png" in " ".join(result.kept["source"])  # the test copy survives
    exact = [g for g in result.summary["duplicate_groups"] if g["kind"] == "exact"]
    assert exact == [{"kind": "exact", "splits": "PrivateTest+Training", "groups": 1, "images": 2, "removed": 1}]
    assert set(result.exclusion_list()["reason"]) == {"exact duplicate", "near duplicate"}
    assert reasons["Training_blurred.png"] == "near duplicate"  # perceptual hashes ignore a blur
    assert len(result.kept) == len(result.faces) == 8
    assert set(result.kept["emotion"]) == {"happy", "sad"}


def test_blur_and_size_filters(web_folder):
    strict = collect(web_folder, CollectConfig(faces="cropped", min_face=0, min_sharpness=50, near_threshold=-1))
    blurred = strict.dropped[strict.dropped["source"].str.endswith("Training_blurred.png")]
    assert blurred["reason"].tolist() == ["blurred"]
    tiny = collect(web_folder, CollectConfig(faces="cropped", min_face=49, near_threshold=-1))
    assert len(tiny.kept) == 0 and tiny.summary["dropped"]["face too small"] > 0


def test_sharpness_is_the_variance_of_the_laplacian():
    flat = np.full((32, 32), 90, np.uint8)
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert sharpness(flat) == 0.0
    assert sharpness(checker) > 1e5


def test_dedup_helpers():
    hashes = np.array([0b0, 0b111, 0b1, 0xFFFF << 40], dtype=np.uint64)
    assert dedup.near_groups(hashes, 1).tolist() == [0, -1, 0, -1]
    assert dedup.near_groups(hashes, 3).tolist() == [0, 0, 0, -1]  # a chain forms one group
    rows, cols = dedup.near_pairs(hashes[:2], 0, others=hashes[2:])
    assert len(rows) == 0
    keep = dedup.keep_one_per_group(np.array([0, 0, -1, 1, 1]), np.array([0, 2, 0, 1, 1]))
    assert keep.tolist() == [False, True, True, True, False]
    assert dedup.exact_groups(np.array([5, 7, 5, 0, 0], dtype=np.uint64)).tolist() == [0, -1, 0, -1, -1]
    with pytest.raises(ValueError, match="threshold"):
        dedup.near_pairs(hashes, 64)


def test_aligned_faces_pair_by_the_correlation_of_their_thumbnails_not_by_hash():
    faces = make_synthetic(n_per_class=2, seed=1, classes=("happy", "sad"), images_per_subject_class=1).images
    face = faces[0]
    copy = cv2.resize(cv2.resize(np.clip(face * 1.1 + 5, 0, 255).astype(np.uint8), (96, 96)), (48, 48))
    thumbs = dedup.thumbnails([face, copy, faces[1], np.full((48, 48), 7, np.uint8)])
    assert thumbs.shape == (4, dedup.THUMBNAIL_SIDE ** 2) and thumbs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(thumbs[:3], axis=1), 1.0, rtol=1e-6)
    assert thumbs[0] @ thumbs[1] > 0.995 > thumbs[0] @ thumbs[2]  # brighter and resized vs another face
    assert not thumbs[3].any()  # a flat image correlates with nothing
    rows, cols = dedup.correlated_pairs(thumbs, 0.005)
    assert list(zip(rows, cols)) == [(0, 1)]
    rows, cols = dedup.correlated_pairs(thumbs[1:], 0.005, others=thumbs[:1])
    assert list(zip(rows, cols)) == [(0, 0)]
    # Equal hashes group every item, unless both of a pair were aligned: then their correlation decides.
    hashes = np.zeros(3, dtype=np.uint64)
    assert dedup.near_groups(hashes, 4).tolist() == [0, 0, 0]
    aligned = np.array([True, True, True])
    assert dedup.near_groups(hashes, 4, aligned, thumbs[:3], 0.005).tolist() == [0, 0, -1]
    assert dedup.near_groups(hashes, 4, np.array([True, True, False]), thumbs[:3], 0.005).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="1 - correlation"):
        dedup.correlated_pairs(thumbs, 1.0)


def test_near_pairs_list_each_pair_once_and_an_exact_correlation_is_within_threshold_zero():
    hashes = np.array([0b0, 0b111, 0b1, 0xFFFF << 40], dtype=np.uint64)
    rows, cols = dedup.near_pairs(hashes, 1)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 2)]  # i < j: no image paired with itself
    thumbs = np.eye(4, dtype=np.float32)[[0, 0, 1]]  # two identical unit vectors: correlation exactly 1
    rows, cols = dedup.correlated_pairs(thumbs, 0.0)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1)]


def test_the_hash_method_asked_for_is_the_one_computed():
    """dhash of a 9 x 8 image (imagehash's own size, so no resizing) is 'pixel brighter than its left neighbour', row
    by row, most significant bit first."""
    gray = np.random.default_rng(0).integers(0, 256, (8, 9)).astype(np.uint8)
    bits = (gray[:, 1:] > gray[:, :-1]).reshape(-1)
    assert dedup.perceptual_hash(gray, "dhash") == int("".join("1" if b else "0" for b in bits), 2)
    assert dedup.perceptual_hash(gray, "phash") != dedup.perceptual_hash(gray, "dhash")


def test_thumbnails_are_area_averages_less_their_mean_at_unit_norm():
    rng = np.random.default_rng(1)
    blocks = rng.integers(40, 216, (16, 16))  # each 2 x 2 block: a + d and a - d side by side, mean a exactly
    spread = rng.integers(1, 40, (16, 16))
    face = np.stack([blocks + spread, blocks - spread], axis=-1).reshape(16, 32).repeat(2, axis=0).astype(np.uint8)
    blocks = blocks.reshape(-1).astype(np.float64)
    expected = (blocks - blocks.mean()) / np.linalg.norm(blocks - blocks.mean())
    np.testing.assert_allclose(dedup.thumbnails([face])[0], expected, atol=1e-6)


def test_aligned_items_pair_by_their_own_thumbnails_whatever_their_place_among_unaligned_ones():
    """An unaligned item first, whose thumbnail equals an aligned one's: it pairs by hash only (none here), and the
    aligned items, all different, stay alone."""
    thumbs = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    hashes = np.array([0, 0xFF, 0xFF00, 0xFF0000], dtype=np.uint64)  # 8 bits apart or more
    aligned = np.array([False, True, True, True])
    assert dedup.near_groups(hashes, 2, aligned, thumbs, 0.005).tolist() == [-1, -1, -1, -1]
    thumbs[3] = thumbs[2]  # two aligned copies
    assert dedup.near_groups(hashes, 2, aligned, thumbs, 0.005).tolist() == [-1, -1, 0, 0]


def test_aligned_faces_are_compared_by_correlation_within_and_against(tmp_path, monkeypatch):
    """The aligned path, with the landmarks stubbed (dlib's points on synthetic drawings move between copies;
    real photos: the KDEF test below): a brighter copy is a near duplicate, within the collection and of a
    folder given as --against, and the method is recorded."""
    from emofx.data import collect as collect_module
    from emofx.data.landmarks import Landmarks

    def eyes_in_place(gray, square, box, crop, options):
        x0, y0, side = square
        eyes = np.array([[x0 + 0.3 * side, y0 + 0.4 * side], [x0 + 0.7 * side, y0 + 0.4 * side]])
        return Landmarks(np.full((68, 2), np.nan), eyes, "eyes", "ok")

    monkeypatch.setattr(collect_module, "face_landmarks", eyes_in_place)
    faces = make_synthetic(n_per_class=4, seed=0, classes=("happy", "sad"), images_per_subject_class=1)
    root, elsewhere = tmp_path / "faces", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    for i, image in enumerate(faces.images):
        Image.fromarray(image).save(root / f"{i}.png")
    Image.fromarray(np.clip(faces.images[0] * 1.1 + 4, 0, 255).astype(np.uint8)).save(root / "copy.jpg", quality=90)
    (elsewhere / "original.png").write_bytes((root / "0.png").read_bytes())
    # At 12 bits of 64 the hash joins distinct faces (five pairs of these lie 8-12 bits apart); their aligned faces
    # do not correlate, so only the copy goes.
    config = CollectConfig(faces="cropped", min_face=0, landmarks="eyes", near_threshold=12)
    result = collect(root, config)
    assert result.summary["config"]["landmarks"] == "eyes" and result.kept["aligned"].all()
    assert result.summary["aligned_faces"] == len(faces) + 1
    assert "  near duplicates: 9 faces aligned on their eyes (eyes) compared by correlation, any others by hash" in (
        report_lines(result.summary))
    assert result.dropped[["source", "reason", "detail"]].values.tolist() == [
        [str(root / "copy.jpg"), "near duplicate", f"of {root / '0.png'}"]]
    assert len(result.kept) == len(faces)
    assert collect(root, replace(config, landmarks="none")).summary["kept"] < len(faces)
    against = collect(root, replace(config, near_threshold=-1), against=[elsewhere])
    assert against.summary["against"]["aligned_faces"] == 1  # the folder's one face, aligned
    dropped = dict(zip(against.dropped["source"], against.dropped["reason"]))
    assert dropped == {str(root / "0.png"): "exact duplicate of another dataset",
                       str(root / "copy.jpg"): "near duplicate of another dataset"}


def test_a_posed_series_keeps_each_photo_and_loses_its_copies(shared_dataset, tmp_path):
    """KDEF: one actor's seven expressions are seven images (a 64-bit hash of the crops puts his surprised face
    within 4 bits of another), while brightened, re-encoded and reframed copies of one are near duplicates, within
    the collection and against a dataset prepared, aligned, from the photos."""
    pytest.importorskip("dlib")
    photos = sorted((shared_dataset("kdef") / "frontal").glob("AM01*S.JPG"))
    assert len(photos) == 7
    downloads, originals = tmp_path / "downloads", tmp_path / "originals"
    downloads.mkdir()
    originals.mkdir()
    for photo in photos:
        (downloads / photo.name).symlink_to(photo)
        (originals / photo.name).symlink_to(photo)
    happy = Image.open(photos[3]).convert("RGB")
    w, h = happy.size
    ImageEnhance.Brightness(happy).enhance(1.1).save(downloads / "brighter.jpg", quality=90)
    happy.save(downloads / "q50.jpg", quality=50)
    happy.crop((w // 25, h // 25, w - w // 25, h - h // 25)).save(downloads / "reframed.jpg", quality=90)
    result = collect(downloads, CollectConfig())
    assert result.summary["config"]["landmarks"] == "dlib68" and result.kept["aligned"].all()
    reasons = dict(zip(result.dropped["source"].str.rsplit("/", n=1).str[-1], result.dropped["reason"]))
    assert reasons == {"brighter.jpg": "near duplicate", "q50.jpg": "near duplicate", "reframed.jpg": "near duplicate"}
    assert sorted(result.kept["source"].str.rsplit("/", n=1).str[-1]) == sorted(p.name for p in photos)
    by_hash = collect(downloads, CollectConfig(landmarks="none"))  # the crops by hash alone: surprise is lost
    assert "AM01SUS.JPG" in set(by_hash.dropped["source"].str.rsplit("/", n=1).str[-1])
    # Against the dataset prepared from the photos (aligned faces): the copies are near copies of its happy face.
    assert main(["prepare", str(originals), "--format", "kdef", "--out", str(tmp_path / "kdef.npz")]) == 0
    for photo in photos:
        (downloads / photo.name).unlink()
    against = collect(downloads, CollectConfig(), against=[tmp_path / "kdef.npz"])
    assert against.summary["against"]["aligned_faces"] == 7 and len(against.kept) == 0
    copies_of_the_dataset = against.dropped[against.dropped["reason"] == "near duplicate of another dataset"]
    assert set(copies_of_the_dataset["detail"]) == {f"of {tmp_path / 'kdef.npz'}:{originals / photos[3].name}"}


def test_against_another_dataset(web_folder, tmp_path):
    other = make_synthetic(n_per_class=4, seed=0, classes=("happy", "sad"), images_per_subject_class=1).subset([0])
    other.save(tmp_path / "other.npz")
    result = collect(web_folder, CollectConfig(faces="cropped", min_face=0, near_threshold=2),
                     against=[tmp_path / "other.npz"])
    against = result.dropped[result.dropped["reason"] == "near duplicate of another dataset"]
    assert len(against) == 1 and "other.npz" in against["detail"].iloc[0]


def test_cli_collect_then_prepare_without_the_duplicates(web_folder, tmp_path, capsys):
    out = tmp_path / "collection"
    assert main(["collect", str(web_folder), "--faces", "cropped", "--min-face", "0", "--out", str(out),
                 "--quiet", "--no-write-faces"]) == 0
    printed = capsys.readouterr().out
    assert "    exact         PrivateTest+Training" in printed  # the kind column fits "against-exact"
    report = json.loads((out / "report.json").read_text())
    assert report["kept"] == 8
    assert report["config"]["landmarks"] == "none" and report["aligned_faces"] == 0  # auto: crops are not aligned
    assert "aligned on their eyes" not in printed
    assert report["config"]["aligned_threshold"] == CollectConfig().aligned_threshold
    exclude = pd.read_csv(out / "exclude.csv")
    assert len(exclude) == 4
    assert main(["collect", str(web_folder), "--out", str(out)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    (out / "NOTES.txt").write_text("mine")  # a file of the user's beside the collection survives --overwrite
    assert main(["collect", str(web_folder), "--faces", "cropped", "--min-face", "0", "--out", str(out),
                 "--quiet", "--no-write-faces", "--overwrite"]) == 0
    capsys.readouterr()
    assert (out / "NOTES.txt").read_text() == "mine" and json.loads((out / "report.json").read_text())["kept"] == 8
    assert main(["collect", str(web_folder), "--faces", "cropped", "--min-face", "0", "--out", str(tmp_path / "bad"),
                 "--landmarks", "eyes", "--aligned-threshold", "1.5"]) == 2
    assert "aligned_threshold (1 - correlation) must lie in [0, 1)" in capsys.readouterr().err
    clean = tmp_path / "clean.npz"
    assert main(["prepare", str(web_folder), "--format", "folder", "--faces", "cropped", "--out", str(clean),
                 "--exclude", str(out), "--no-progress"]) == 2
    assert f"--exclude {out} is a folder; give the CSV file" in capsys.readouterr().err
    assert main(["prepare", str(web_folder), "--format", "folder", "--faces", "cropped", "--out", str(clean),
                 "--exclude", str(out / "exclude.csv"), "--no-progress"]) == 0
    assert "left out 4 images" in capsys.readouterr().out
    kept = FaceDataset.load(clean)
    assert not any(p.endswith("Training_copy.png") for p in kept.path)
    assert kept.meta["excluded"]["images"] == 4
    assert kept.meta["duplicates"]["files"] == 0  # the exact copy left with the list


def test_write_collection_writes_faces_and_a_manifest_that_prepare_reads(web_folder, tmp_path):
    result = collect(web_folder, CollectConfig(faces="cropped", min_face=0))
    out = write_collection(result, tmp_path / "col")
    manifest = pd.read_csv(out / "manifest.csv")
    assert (out / manifest["path"].iloc[0]).is_file()
    assert not (tmp_path / ".col.partial").exists()
    with pytest.raises(FileExistsError):
        write_collection(result, tmp_path / "col")
    assert main(["prepare", str(out / "manifest.csv"), "--format", "manifest", "--faces", "cropped",
                 "--out", str(tmp_path / "col.npz"), "--no-progress"]) == 0
    assert len(FaceDataset.load(tmp_path / "col.npz")) == len(manifest)
    assert main(["prepare", str(out), "--format", "manifest", "--faces", "cropped",  # the folder stands for it
                 "--out", str(tmp_path / "folder.npz"), "--no-progress"]) == 0
    np.testing.assert_array_equal(FaceDataset.load(tmp_path / "folder.npz").images,
                                  FaceDataset.load(tmp_path / "col.npz").images)
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from PIL import Image

    with pytest.MonkeyPatch.context() as patch:  # Ctrl-C while the faces are written: nothing half-written stays
        patch.setattr(Image.Image, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_collection(result, tmp_path / "col", overwrite=True)
    assert not (tmp_path / ".col.partial").exists()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept


def test_collect_rejects_bad_input(tmp_path, capsys):
    assert main(["collect", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "src").mkdir()
    (tmp_path / "q.csv").write_text("name,other\nx,y\n")
    (tmp_path / "src" / "a.png").write_bytes(b"x")
    assert main(["collect", str(tmp_path / "src"), "--queries", str(tmp_path / "q.csv"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "expected columns file, query" in capsys.readouterr().err
    assert main(["collect", str(tmp_path / "src"), "--min-sharpness", "nan", "--out", str(tmp_path / "o")]) == 2
    assert "must be finite and >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_query_table_sets_emotion_and_provenance(web_folder, tmp_path):
    files = sorted(p.relative_to(web_folder).as_posix() for p in web_folder.rglob("*.png"))
    pd.DataFrame({"file": files, "query": "快乐 脸", "emotion": "joy", "language": "zh", "culture": "Chinese"}
                 ).to_csv(tmp_path / "queries.csv", index=False)
    result = collect(web_folder, CollectConfig(faces="cropped", min_face=0),
                     queries=tmp_path / "queries.csv")
    pngs = result.kept[result.kept["source"].str.endswith(".png")]
    assert set(pngs["emotion"]) == {"happy"} and set(pngs["culture"]) == {"Chinese"}
    assert result.summary["not_in_query_table"] == int((~result.kept["source"].str.endswith(".png")).sum())


def test_exclusion_lists_with_relative_paths_travel_with_the_data(web_folder, tmp_path):
    from emofx.data.collection_files import exclude_listed

    dataset = FaceDataset.from_label_names(
        np.zeros((2, 4, 4), np.uint8), ["happy", "sad"],
        path=[str(web_folder / "train" / "happy" / "Training_001.png"), str(web_folder / "test" / "sad" / "x.png")])
    listing = tmp_path / "exclude.csv"
    pd.DataFrame({"path": [f"{web_folder.name}/train/happy/Training_001.png"]}).to_csv(listing, index=False)
    kept, excluded = exclude_listed(dataset, listing)
    assert excluded == 1 and kept.path.tolist() == [dataset.path[1]]
    pd.DataFrame({"path": ["elsewhere/other.png"]}).to_csv(listing, index=False)
    with pytest.raises(ValueError, match="no image of the dataset is listed"):
        exclude_listed(dataset, listing)
    kept, excluded = exclude_listed(dataset, listing, sample=True)  # a --limit sample may hold none of them
    assert excluded == 0 and len(kept) == len(dataset)


def test_overwrite_never_deletes_the_source_or_a_folder_collect_did_not_write(web_folder, tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    web_folder.rename(project / "downloads")
    (project / "notes.txt").write_text("keep me")
    assert main(["collect", str(project / "downloads"), "--faces", "cropped", "--min-face", "0", "--quiet",
                 "--out", str(project), "--overwrite"]) == 2
    assert "contains the source" in capsys.readouterr().err
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me too")
    assert main(["collect", str(project / "downloads"), "--faces", "cropped", "--min-face", "0", "--quiet",
                 "--out", str(foreign), "--overwrite"]) == 2
    assert "is not a collection" in capsys.readouterr().err
    assert (project / "notes.txt").read_text() == "keep me" and (foreign / "thesis.tex").is_file()
    assert len(list((project / "downloads").rglob("*.png"))) == 10


def test_sources_are_absolute_and_splits_come_only_from_folders_under_the_source(tmp_path, monkeypatch):
    faces = make_synthetic(n_per_class=2, seed=1, classes=("happy", "sad"), images_per_subject_class=1)
    root = tmp_path / "test" / "web"  # a "test" folder above the source says nothing of the split
    for i, (image, label) in enumerate(zip(faces.images, faces.label_names)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"photo{i}.png")
    (root / "happy" / "validation").mkdir()
    Image.fromarray(faces.images[0]).save(root / "happy" / "validation" / "copy.png")
    monkeypatch.chdir(tmp_path)
    result = collect("test/web", CollectConfig(faces="cropped", min_face=0, near_threshold=-1))
    assert all(s.startswith(str(tmp_path)) for s in result.kept["source"])
    split = dict(zip(result.kept["source"].str.rsplit("/", n=1).str[-1], result.kept["split"]))
    assert split["photo1.png"] == "" and split["copy.png"] == "validation"
    assert result.summary["source"] == str(tmp_path / "test" / "web")


def test_a_file_found_by_two_queries_gets_both(web_folder, tmp_path):
    rows = [("train/happy/Training_001.png", "happy face", "happy"), ("train/happy/Training_001.png", "joy", ""),
            ("test/sad/PrivateTest_004.png", "sad face", "sad")]
    pd.DataFrame(rows, columns=["file", "query", "emotion"]).to_csv(tmp_path / "q.csv", index=False)
    result = collect(web_folder, CollectConfig(faces="cropped", min_face=0), queries=tmp_path / "q.csv")
    row = result.kept[result.kept["source"].str.endswith("Training_001.png")].iloc[0]
    assert row["query"] == "happy face; joy" and row["emotion"] == "happy"
    rows.append(("test/sad/PrivateTest_004.png", "angry face", "angry"))
    pd.DataFrame(rows, columns=["file", "query", "emotion"]).to_csv(tmp_path / "q.csv", index=False)
    with pytest.raises(ValueError, match="1 files are listed with different emotions"):
        collect(web_folder, CollectConfig(faces="cropped", min_face=0), queries=tmp_path / "q.csv")


def test_a_folder_without_a_single_face_is_an_empty_collection(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("not an image")
    (tmp_path / "junk" / "b.png").write_bytes(b"\x89PNG broken")
    result = collect(tmp_path / "junk", CollectConfig(faces="cropped", min_face=0))
    assert len(result.kept) == 0 and result.summary["dropped"] == {"not an image": 2}


def test_against_an_aligned_dataset_finds_exact_copies_of_its_files(web_folder, tmp_path, capsys):
    """A prepared dataset keeps its files' digests: copies of them are found though its faces were aligned."""
    from dataclasses import replace

    files = sorted((web_folder / "train" / "sad").glob("Training_*.png"))[:2]
    unrelated = make_synthetic(n_per_class=1, seed=9, classes=("happy", "sad"), images_per_subject_class=1)
    aligned = replace(unrelated, extras={"content_hash": np.array([dedup.content_digest(f.read_bytes()) for f in files],
                                                                  dtype=np.uint64)},
                      meta={**unrelated.meta, "aligned": True})  # its faces no longer look like the files
    aligned.save(tmp_path / "aligned.npz")
    config = CollectConfig(faces="cropped", min_face=0, near_threshold=2)
    result = collect(web_folder, config, against=[tmp_path / "aligned.npz"])
    exact = result.dropped[result.dropped["reason"] == "exact duplicate of another dataset"]
    assert sorted(exact["source"]) == sorted(map(str, files))
    assert (exact["detail"].str.contains("aligned.npz:")).all()
    assert set(exact["source"]) <= set(result.exclusion_list()["path"])
    assert result.summary["against"]["aligned"] == [str(tmp_path / "aligned.npz")]
    argv = ["collect", str(web_folder), "--faces", "cropped", "--min-face", "0", "--out", str(tmp_path / "out"),
            "--against", str(tmp_path / "aligned.npz"), "--quiet"]
    assert main(argv) == 0
    assert "holds aligned faces" in capsys.readouterr().out


def test_against_a_folder_reads_its_images_as_the_collection_reads_its_own(web_folder, tmp_path):
    """Photos in a folder given as --against are cropped to their faces like the collection's, so a face that
    a collection crops from a smaller copy of a photo is found (with the photo's file digest for exact copies)."""
    faces = make_synthetic(n_per_class=2, seed=3, classes=("happy", "sad"), images_per_subject_class=1)
    photos, downloads = tmp_path / "photos", tmp_path / "downloads"
    photos.mkdir()
    downloads.mkdir()
    for i, face in enumerate(faces.images):
        photo = cv2.copyMakeBorder(cv2.resize(face, (192, 192)), 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=40)
        Image.fromarray(photo).save(photos / f"p{i}.png")
    (downloads / "copy.png").write_bytes((photos / "p0.png").read_bytes())
    Image.open(photos / "p1.png").resize((192, 192)).save(downloads / "small.jpg", quality=85)
    result = collect(downloads, CollectConfig(faces="cropped", min_face=0, near_threshold=4), against=[photos])
    reasons = dict(zip(result.dropped["source"].str.rsplit("/", n=1).str[-1], result.dropped["reason"]))
    assert reasons == {"copy.png": "exact duplicate of another dataset",
                       "small.jpg": "near duplicate of another dataset"}
    assert result.summary["against"] == {"sources": [str(photos)], "aligned": [], "files": 4, "faces": 4,
                                         "aligned_faces": 0}


def test_near_duplicate_benchmark_counts_copies_caught_and_photos_kept(shared_dataset, tmp_path):
    pytest.importorskip("dlib")
    from benchmarks.near_duplicates import COPIES, KDEF_NAME, copies_row, series_row, write_copies

    photos = sorted((shared_dataset("kdef") / "frontal").glob("AM01*S.JPG"))
    write_copies(photos[:2], tmp_path)
    assert len(list(tmp_path.iterdir())) == 2 * (1 + len(COPIES))
    row = copies_row(tmp_path, 2, "dlib68")
    assert row["distinct_photos_kept"] == 2 and row["caught_q50"] == row["caught_reframed"] == 1.0
    series = tmp_path / "series"
    series.mkdir()
    for photo in photos:
        (series / photo.name).symlink_to(photo)
    aligned, hashed = series_row("AM01", series, KDEF_NAME, "dlib68"), series_row("AM01", series, KDEF_NAME, "none")
    assert (aligned["photos"], aligned["dropped_as_near_duplicates"], aligned["groups"]) == (7, 0, 0)
    assert hashed["dropped_as_near_duplicates"] >= 1 and hashed["groups_across_expressions"] == hashed["groups"] >= 1
    assert hashed["groups_across_people"] == 0


def test_faces_are_named_by_content_so_answers_survive_a_new_collection(web_folder, tmp_path, capsys):
    """Faces named by their source's content keep their names when the collection is made again from more
    downloads (a numbered name would pass a face's crowd answers to another face); --overwrite refuses when the
    faces folder holds files of the user's."""
    args = ["collect", str(web_folder), "--faces", "cropped", "--min-face", "0", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "col")]) == 0
    first = pd.read_csv(tmp_path / "col" / "manifest.csv", dtype=str)
    assert (first["path"] == "faces/" + first["content_hash"] + ".png").all()
    new = make_synthetic(n_per_class=1, seed=9, classes=("happy",), images_per_subject_class=1)
    Image.fromarray(new.images[0]).save(web_folder / "test" / "happy" / "AAA_new.png")  # sorts first
    assert main([*args, str(tmp_path / "col"), "--overwrite"]) == 0
    second = pd.read_csv(tmp_path / "col" / "manifest.csv", dtype=str)
    assert len(second) == len(first) + 1
    assert dict(zip(first["source"], first["path"])).items() <= dict(zip(second["source"], second["path"])).items()
    face = second.set_index("source").loc[first["source"].iloc[0], "path"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "col" / face)),
                                  np.asarray(Image.open(first["source"].iloc[0])))
    (tmp_path / "col" / "faces" / "mine.png").write_bytes(b"drawn by hand")
    assert main([*args, str(tmp_path / "col"), "--overwrite"]) == 2
    assert "faces holds 1 files the earlier collection did not write (e.g. mine.png)" in capsys.readouterr().err
    assert (tmp_path / "col" / "faces" / "mine.png").read_bytes() == b"drawn by hand"
    (tmp_path / "answers.csv").write_text("x\n")
    assert main([*args, str(tmp_path / "answers.csv")]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "answers.csv").read_text() == "x\n"


def test_collect_follows_linked_folders_and_drops_links_and_names_it_cannot_read(web_folder, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "happy").symlink_to(web_folder / "train" / "happy", target_is_directory=True)
    (source / "gone.png").symlink_to(tmp_path / "nowhere.png")
    latin1 = os.fsdecode(bytes(source) + b"/caf\xe9.png")  # a Latin-1 name, not UTF-8
    shutil.copy(web_folder / "test" / "sad" / "PrivateTest_004.png", latin1)
    result = collect(source, CollectConfig(faces="cropped", min_face=0, near_threshold=-1))
    linked = sorted(p.name for p in (web_folder / "train" / "happy").iterdir())
    assert result.summary["files"] == len(linked) + 2
    reasons = dict(zip(result.dropped["source"].str.rsplit("/", n=1).str[-1], result.dropped["reason"]))
    assert reasons["gone.png"] == "unreadable file" and reasons["caf\\xe9.png"] == "file name not UTF-8"
    assert "rename it" in result.dropped.set_index("reason").loc["file name not UTF-8", "detail"]
    write_collection(result, tmp_path / "col")  # the tables can be written
    assert "caf\\xe9.png" in (tmp_path / "col" / "dropped.csv").read_text()
    folder = tmp_path / "byemotion" / "sad"  # prepare skips the name too, with the reason, and info reads the dataset
    folder.mkdir(parents=True)
    shutil.copy(latin1, os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    shutil.copy(latin1, folder / "ok.png")
    assert main(["prepare", str(folder.parent), "--format", "folder", "--faces", "cropped", "--no-progress",
                 "--out", str(tmp_path / "d.npz")]) == 0
    assert "caf\\xe9.png: file name is not valid UTF-8" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "d.npz")]) == 0 and len(FaceDataset.load(tmp_path / "d.npz")) == 1


def test_an_exclusion_list_leaves_out_a_link_or_its_target_not_both(tmp_path):
    from emofx.data.collection_files import exclude_listed

    real = tmp_path / "real"
    real.mkdir()
    (real / "x.png").write_bytes(b"x")
    (real / "link.png").symlink_to(real / "x.png")  # collect keeps one of the two, lists the other
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    dataset = FaceDataset.from_label_names(np.zeros((3, 4, 4), np.uint8), ["happy", "sad", "sad"],
                                           path=[str(real / "link.png"), str(real / "x.png"),
                                                 str(tmp_path / "linked" / "other.png")])
    listing = tmp_path / "exclude.csv"
    for listed, left in ((real / "x.png", 1), (real / "link.png", 0), ("real/x.png", 1),
                         (real / "other.png", 2),  # the dataset read the folder through a link
                         (tmp_path / "linked" / "x.png", 1)):  # the list names it through one
        pd.DataFrame({"path": [str(listed)]}).to_csv(listing, index=False)
        kept, excluded = exclude_listed(dataset, listing)
        assert excluded == 1 and dataset.path[left] not in kept.path.tolist(), listed


def test_a_query_table_must_name_files_under_the_source_and_copies_across_emotions_are_told(web_folder, tmp_path):
    from emofx.data.collect_queries import QueryTableError

    files = sorted(p.relative_to(web_folder).as_posix() for p in web_folder.rglob("*.png"))
    pd.DataFrame({"file": [f"web/{f}" for f in files], "query": "q"}).to_csv(tmp_path / "prefixed.csv", index=False)
    config = CollectConfig(faces="cropped", min_face=0)
    with pytest.raises(QueryTableError, match=rf"none of the {len(files)} files of the query table .* is under "
                                              rf"{web_folder} \(its first row names {web_folder / 'web' / files[0]}\)"):
        collect(web_folder, config, queries=tmp_path / "prefixed.csv")
    pd.DataFrame({"file": [*files, "gone.jpg"], "query": "q"}).to_csv(tmp_path / "queries.csv", index=False)
    shutil.copy(web_folder / "test" / "happy" / "PrivateTest_000.png", web_folder / "test" / "sad" / "copy.png")
    result = collect(web_folder, config, queries=tmp_path / "queries.csv")
    assert result.summary["query_rows_without_file"] == 1
    exact = result.duplicates[result.duplicates["kind"] == "exact"]
    copy_group = exact.loc[exact["source"].str.endswith("copy.png"), "group"].iloc[0]
    emotions = exact.loc[exact["group"] == copy_group, "emotion"]
    assert set(emotions) == {"happy", "sad"} and result.summary["groups_across_emotions"] == 1
    assert "1 duplicate groups join images found for different emotions" in "\n".join(report_lines(result.summary))


def test_an_image_too_large_to_decode_safely_is_dropped_as_such(web_folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 48-px faces pass twice the limit, as a 180 Mpx photo would
    result = collect(web_folder / "test", CollectConfig(faces="cropped", min_face=0))
    assert len(result.kept) == 0 and set(result.dropped["reason"]) == {"image too large"}
    assert "shrink it if it is a real photo" in result.dropped["detail"].iloc[0]


def test_a_photo_of_several_faces_keeps_the_largest_and_says_so(shared_dataset, tmp_path):
    photos = sorted((shared_dataset("kdef") / "frontal").glob("A*01HAS.JPG"))[:2]
    pair = [np.asarray(Image.open(p).convert("L")) for p in photos]
    downloads = tmp_path / "downloads" / "happy"
    downloads.mkdir(parents=True)
    side_by_side = np.concatenate(pair, axis=1)  # two actors, side by side
    Image.fromarray(side_by_side).save(downloads / "two.png")
    Image.fromarray(pair[0]).save(downloads / "one.png")
    result = collect(downloads.parent, CollectConfig(near_threshold=-1, landmarks="none"))
    found = dict(zip(result.kept["source"].str.rsplit("/", n=1).str[-1], result.kept["faces_found"]))
    assert found == {"one.png": 1, "two.png": 2} and result.summary["several_faces"] == 1
    assert "images with several faces found (the largest kept" in "\n".join(report_lines(result.summary))
    cropped = collect(downloads.parent, CollectConfig(faces="cropped", near_threshold=-1, landmarks="none"))
    assert (cropped.kept["faces_found"] == 1).all() and cropped.summary["several_faces"] == 0
