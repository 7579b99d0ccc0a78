"""FaceDataset: construction, .npz round trip, DataFrame view, merging and resizing."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from emofx.data.dataset import DatasetError, FaceDataset, merge, resize_dataset
from emofx.data.emotions import UnknownEmotionError, canonical_emotion, ordered_classes, shared_classes


def tiny(n: int = 6, size: int = 8, culture: str = "A", names=("happy", "sad", "NE")) -> FaceDataset:
    rng = np.random.default_rng(n + size)
    labels = [names[i % len(names)] for i in range(n)]
    return FaceDataset.from_label_names(
        rng.integers(0, 256, (n, size, size), dtype=np.uint8), labels, culture=culture,
        subject=[f"{culture}{i % 2}" for i in range(n)], path=[f"/x/{culture}{i}.png" for i in range(n)],
        split=["train", "test"] * (n // 2),
        extras={"votes": rng.integers(0, 10, (n, 10)).astype(np.int16), "agreement": rng.random(n)},
        meta={"vote_names": [f"v{j}" for j in range(10)], "source": "/x", "format": "folder"},
        skipped=[{"path": "/x/bad.png", "reason": "truncated"}],
    )


def test_aliases_and_class_order():
    assert canonical_emotion("FEAR") == canonical_emotion("af") == "afraid"
    assert ordered_classes(["NE", "happiness", "anger"]) == ("angry", "happy", "neutral")
    with pytest.raises(UnknownEmotionError, match=r"\['bored'\].*accepted names"):
        ordered_classes(["bored", "happy"])


def test_round_trip_keeps_everything(tmp_path):
    data = tiny()
    assert data.classes == ("happy", "sad", "neutral")
    path = data.save(tmp_path / "d.npz")
    back = FaceDataset.load(path)
    np.testing.assert_array_equal(back.images, data.images)
    np.testing.assert_array_equal(back.labels, data.labels)
    for name in ("culture", "subject", "path", "split"):
        assert list(getattr(back, name)) == list(getattr(data, name))
    np.testing.assert_array_equal(back.extras["votes"], data.extras["votes"])
    assert back.meta == data.meta and back.skipped == data.skipped and back.classes == data.classes


def test_save_refuses_to_overwrite_and_load_rejects_foreign_files(tmp_path):
    data = tiny()
    data.save(tmp_path / "d.npz")
    with pytest.raises(FileExistsError, match="--overwrite"):
        data.save(tmp_path / "d.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="not an emofx dataset"):
        FaceDataset.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="not a readable .npz file"):
        FaceDataset.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="emofx prepare"):
        FaceDataset.load(tmp_path / "none.npz")


def test_info_is_json_ready_and_counts_right():
    info = json.loads(json.dumps(tiny().info()))
    assert info["n"] == 6 and info["counts"] == {"happy": 2, "sad": 2, "neutral": 2}
    assert info["cultures"] == {"A": 6} and info["subjects"] == 2 and info["image_shape"] == [8, 8]
    assert info["splits"] == {"test": 3, "train": 3} and info["skipped"][0]["reason"] == "truncated"


def test_frame_has_one_row_per_image_with_named_votes():
    frame = tiny().to_frame()
    assert len(frame) == 6 and list(frame["emotion"][:3]) == ["happy", "sad", "neutral"]
    assert "votes_v0" in frame and "agreement" in frame


def test_subset_and_restrict_classes():
    data = tiny()
    happy_sad = data.restrict_classes(["sad", "happy"])
    assert happy_sad.classes == ("happy", "sad") and len(happy_sad) == 4
    assert list(happy_sad.label_names) == ["happy", "sad", "happy", "sad"]
    assert len(data.subset(data.split == "train")) == 3
    with pytest.raises(DatasetError, match="not in this dataset"):
        data.restrict_classes(["angry"])
    with pytest.raises(DatasetError, match="at least one class"):
        data.restrict_classes([])
    assert len(data.subset([])) == 0
    with pytest.raises(DatasetError, match="a boolean mask of \\(5,\\) for 6 images"):
        data.subset(np.ones(5, bool))
    with pytest.raises(DatasetError, match="all 0 or 1 .* look like a mask: give a boolean mask"):
        data.subset((data.split == "train").astype(int))  # e.g. a 0/1 column of a table: not images 0 and 1
    assert data.subset([1, 0, -1]).path.tolist() == [data.path[1], data.path[0], data.path[5]]
    for wrong, problem in (([6], "index 6 is outside this dataset of 6 images"), ([-7], "index -7 is outside"),
                           (["happy"], "a boolean mask or a list of integer indices; got <U5")):
        with pytest.raises(DatasetError, match=problem):
            data.subset(wrong)


def test_labels_and_classes_mean_one_thing():
    from dataclasses import replace

    data = tiny()
    images, names = data.images, list(data.label_names)
    with pytest.raises(DatasetError, match="classes must be distinct and in emofx's order \\('happy', 'sad'\\)"):
        replace(data, labels=1 - data.labels, classes=("sad", "happy"))  # would read every label wrong
    with pytest.raises(DatasetError, match="classes must be distinct"):
        replace(data, classes=("happy", "happy"))
    with pytest.raises(DatasetError, match="labels must be integer class indices; got float64"):
        replace(data, labels=data.labels + 0.5)
    with pytest.raises(DatasetError, match="images must be uint8 pixels \\(0-255\\); got float64 values"):
        FaceDataset.from_label_names(images / 255.0, names)  # [0, 1] floats would become 0 and 1
    with pytest.raises(DatasetError, match="images must be uint8 pixels"):
        FaceDataset.from_label_names(images.astype(np.int16) + 200, names)  # would wrap past 255
    with pytest.raises(DatasetError, match="5 images for 6 label names"):
        FaceDataset.from_label_names(images[:5], names)
    assert FaceDataset.from_label_names(images.astype(np.int64), names).images.dtype == np.uint8


def test_merge_unites_classes_and_needs_one_size():
    a, b = tiny(culture="A"), tiny(culture="B", names=("angry", "happy"))
    merged = merge([a, b])
    assert merged.classes == ("angry", "happy", "sad", "neutral")
    assert merged.info()["cultures"] == {"A": 6, "B": 6}
    assert list(merged.path[-1:]) == ["/x/B5.png"] and len(merged.skipped) == 2
    assert merged.meta["vote_names"] == a.meta["vote_names"] and merged.extras["votes"].shape == (12, 10)
    big = tiny(size=16, culture="C")
    with pytest.raises(DatasetError, match="different sizes"):
        merge([a, big])
    assert merge([a, big], resize=12).image_shape == (12, 12)
    assert resize_dataset(big, 8).images.shape == (6, 8, 8)
    # the crops' framing is kept where every part was cut alike (regions placed without landmarks need the margin)
    framed = [replace(d, meta={**d.meta, "face_options": {"size": d.image_shape[0], "detect": True, "margin": 0.3}})
              for d in (a, big)]
    assert merge(framed, resize=12).meta["face_options"] == {"size": 12, "detect": True, "margin": 0.3}
    other = replace(framed[1], meta={**framed[1].meta, "face_options": {"size": 16, "detect": True, "margin": 0.1}})
    assert "face_options" not in merge([framed[0], other], resize=12).meta


def test_resizing_moves_landmarks_with_the_pixels_and_rejects_bad_sizes():
    points = np.array([[[0.0, 0.0], [7.0, 3.5]]], np.float32)  # the first and last pixel centres, and one between
    data = FaceDataset.from_label_names(np.zeros((1, 8, 8), np.uint8), ["happy"],
                                        extras={"landmarks": points, "eye_centres": points.copy()})
    bigger = resize_dataset(data, 16)
    assert bigger.extras["landmarks"][0].tolist() == [[0.5, 0.5], [14.5, 7.5]]
    assert bigger.extras["eye_centres"].dtype == np.float32
    assert resize_dataset(bigger, 8).extras["landmarks"].tolist() == points.tolist()
    for size in (0, -5, 4000):
        with pytest.raises(DatasetError, match="between 8 and 1024"):
            resize_dataset(data, size)


def test_a_damaged_dataset_file_is_one_clear_error(tmp_path):
    tiny().save(tmp_path / "whole.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:2000])
    with pytest.raises(DatasetError, match="not a readable .npz file"):
        FaceDataset.load(tmp_path / "cut.npz")
    whole = (tmp_path / "whole.npz").read_bytes()  # a damaged member inside an intact archive
    (tmp_path / "bad_member.npz").write_bytes(whole.replace(b"\x93NUMPY", b"\x93NUMPZ", 1))
    with pytest.raises(DatasetError, match="not a readable emofx dataset"):
        FaceDataset.load(tmp_path / "bad_member.npz")
    damaged = bytearray(whole)  # a compressed member whose deflate stream breaks before its checksum is reached
    with zipfile.ZipFile(tmp_path / "whole.npz") as archive:
        member = archive.getinfo("labels.npy")
    assert member.compress_type == zipfile.ZIP_DEFLATED
    name_length, extra_length = struct.unpack("<HH", damaged[member.header_offset + 26:member.header_offset + 30])
    start = member.header_offset + 30 + name_length + extra_length
    damaged[start:start + 2] = bytes(b ^ 0xFF for b in damaged[start:start + 2])
    (tmp_path / "bad_stream.npz").write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match="not a readable emofx dataset.*decompressing"):
        FaceDataset.load(tmp_path / "bad_stream.npz")


def test_bad_construction_is_an_error():
    with pytest.raises(DatasetError, match="uint8"):
        FaceDataset.from_label_names(np.zeros((2, 4)), ["happy", "sad"])
    with pytest.raises(DatasetError, match="extra 'votes'"):
        FaceDataset.from_label_names(np.zeros((2, 4, 4), np.uint8), ["happy", "sad"], extras={"votes": np.zeros(3)})


def test_a_save_that_cannot_write_names_the_file_asked_for(tmp_path, monkeypatch):
    def refused(path, arrays, stored):
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr("emofx.data.dataset._write_npz", refused)
    data = FaceDataset.from_label_names(np.zeros((2, 4, 4), np.uint8), ["happy", "sad"])
    with pytest.raises(OSError, match=rf"^cannot write {tmp_path / 'd.npz'}: Operation not permitted$"):
        data.save(tmp_path / "d.npz")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left beside it


def test_a_missing_dataset_given_by_a_relative_path_names_the_folder_it_was_looked_for_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"dataset file data/x.npz \(relative to {tmp_path}\) does not exist"):
        FaceDataset.load("data/x.npz")
    with pytest.raises(FileNotFoundError, match=rf"dataset file {tmp_path / 'x.npz'} does not exist"):
        FaceDataset.load(tmp_path / "x.npz")


def test_images_and_names_given_in_another_form_are_refused_or_read_as_meant():
    with pytest.raises(DatasetError, match=r"\(2, 4, 4, 1\); one channel: images\[\.\.\., 0\]"):
        FaceDataset.from_label_names(np.zeros((2, 4, 4, 1), np.uint8), ["happy", "sad"])
    with pytest.raises(DatasetError, match=r"\(2, 4, 4, 3\); colour: convert to grayscale first"):
        FaceDataset.from_label_names(np.zeros((2, 4, 4, 3), np.uint8), ["happy", "sad"])
    with pytest.raises(DatasetError, match=r"values 200.0..200.0 \(images.round\(\).clip\(0, 255\)"):  # no * 255
        FaceDataset.from_label_names(np.full((2, 4, 4), 200.0), ["happy", "sad"])
    data = FaceDataset.from_label_names(np.zeros((2, 4, 4), np.uint8), ["happy", "sad"], extras={"weight": [1, 2]})
    assert data.subset([1]).extras["weight"].tolist() == [2]  # a list of per-image values is an array
    assert data.restrict_classes("happy").classes == ("happy",)  # one name, not its letters
    assert FaceDataset(np.zeros((1, 4, 4), np.uint8), [0], "happy", None, None, None, None).classes == ("happy",)


def test_merge_says_what_it_takes():
    one = tiny()
    with pytest.raises(TypeError, match=r"merge takes a list of FaceDatasets \(merge\(\[a, b\]\)\); got FaceDataset"):
        merge(one)
    with pytest.raises(TypeError, match="got FaceDataset, ndarray"):
        merge([one, one.images])


def test_restricting_to_later_classes_relabels_the_images():
    data = tiny()  # happy, sad, neutral: dropping happy moves sad to label 0 and neutral to label 1
    kept = data.restrict_classes(["neutral", "sad"])
    assert kept.classes == ("sad", "neutral") and kept.labels.tolist() == [0, 1, 0, 1]
    assert list(kept.label_names) == ["sad", "neutral", "sad", "neutral"]


def test_shared_classes_are_those_both_lists_have_in_canonical_order():
    assert shared_classes(("sad", "happy", "angry"), ("surprised", "happy", "sad")) == ("happy", "sad")
    assert shared_classes(("angry",), ("happy",)) == ()


def test_merge_keeps_only_the_extras_every_part_has_with_one_shape():
    a = replace(tiny(culture="A"), extras={"agreement": np.full(6, 0.5), "landmarks": np.zeros((6, 68, 2)),
                                           "only_a": np.arange(6)})
    b = replace(tiny(culture="B"), extras={"agreement": np.full(6, 0.25), "landmarks": np.zeros((6, 5, 2))})
    merged = merge([a, b])
    assert sorted(merged.extras) == ["agreement"]  # landmarks of two layouts, and only_a, are left out
    assert merged.extras["agreement"].tolist() == [0.5] * 6 + [0.25] * 6


def test_resizing_a_portrait_image_scales_x_by_the_width_and_y_by_the_height():
    points = np.array([[[1.5, 3.5]]], np.float32)  # x of a 4-wide image, y of an 8-high one
    data = FaceDataset.from_label_names(np.zeros((1, 8, 4), np.uint8), ["happy"], extras={"landmarks": points})
    moved = resize_dataset(data, 16).extras["landmarks"][0, 0]
    assert moved.tolist() == [(1.5 + 0.5) * 4 - 0.5, (3.5 + 0.5) * 2 - 0.5]


def test_info_counts_only_the_people_images_name():
    data = replace(tiny(), subject=np.array(["p1", "p1", "p2", "", "", ""]))
    assert data.info()["subjects"] == 2 and not data.has_subjects


def test_a_label_equal_to_the_number_of_classes_is_refused():
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 3\); got 0..3"):
        replace(tiny(), labels=np.array([0, 1, 2, 3, 0, 1]))


def test_dataset_table_states_the_facts_in_a_few_lines_without_the_records_file_lists():
    """What notebooks 00-02 show of their data: info() printed as JSON ran to 45 lines, paths of duplicates included."""
    from emofx.data.overview import dataset_table
    from emofx.data.synthetic import make_synthetic

    data = make_synthetic("eyes", n_per_class=4, seed=0, size=24)
    examples = [["/data/fer2013/test/disgust/PrivateTest_1.jpg", "/data/fer2013/train/disgust/Training_2.jpg"]]
    data = replace(data, meta={**data.meta, "duplicates": {"files": 8, "groups": 8, "examples": examples}})
    lines = dataset_table(data).splitlines()
    assert lines[:3] == ["images      28 of 24x24 pixels",
                         "classes     7: angry, disgusted, afraid, happy, sad, surprised, neutral", "subjects    1"]
    assert "duplicates  8 files repeat another's bytes" in lines and not any("PrivateTest_1" in s for s in lines)
    assert [s.split()[0] for s in lines[-7:]] == list(data.classes)  # per emotion, in the vocabulary's order
    assert len(lines) < len(json.dumps(data.info(), indent=1).splitlines()) / 2


def test_emotion_order_lists_emotions_as_the_confusion_matrices_do_with_others_after_and_a_pooled_row_last():
    from emofx.data.emotions import emotion_order

    names = ["sad", "all", "zebra", "angry", "contempt", "neutral", "apple"]
    assert sorted(names, key=emotion_order) == ["angry", "sad", "neutral", "contempt", "all", "apple", "zebra"]
    assert sorted(names, key=lambda name: emotion_order(name, "all")) == [
        "angry", "sad", "neutral", "contempt", "apple", "zebra", "all"]
