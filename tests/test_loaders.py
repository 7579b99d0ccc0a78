"""Every loader on small slices of the real data and on small files written here, plus bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from emofx.data.emotions import UnknownEmotionError
from emofx.data.loaders import (
    FERPLUS_VOTE_COLUMNS,
    FORMATS,
    KDEF_EXPRESSIONS,
    NO_MAJORITY,
    SourceError,
    ferplus_majority,
    load,
    load_fer2013_csv,
    load_ferplus,
    load_folder,
    load_kdef,
    load_manifest,
    load_mat,
    load_taiwanese,
)

FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


pytestmark = pytest.mark.usefixtures("private_cache")  # faces prepared here are cached in the test's folder


@pytest.fixture(scope="module")
def fer_files(shared_dataset):
    """Two training and one test image per FER2013 class (real files, read only)."""
    root = shared_dataset("fer2013")
    return {c: sorted((root / "train" / c).iterdir())[:2] + sorted((root / "test" / c).iterdir())[:1]
            for c in FER_CLASSES}


def fer_layout(tmp_path, fer_files):
    """A small copy of the Kaggle layout: train/<class>/ and test/<class>/."""
    root = tmp_path / "fer"
    for cls, files in fer_files.items():
        for f in files:
            target = root / f.parent.parent.name / cls / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    return root


# ---------------------------------------------------------------------------- folder
def test_folder_reads_the_fer2013_layout_with_splits_from_file_names(tmp_path, fer_files):
    data = load_folder(fer_layout(tmp_path, fer_files))
    assert len(data) == 21 and data.image_shape == (48, 48)
    assert data.classes == ("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")
    assert data.counts() == {c: 3 for c in data.classes}
    expected_splits = sorted(f.name.split("_")[0] for files in fer_files.values() for f in files)
    assert sorted(data.split) == expected_splits
    assert data.meta["faces"] == {"as_is": 21}  # small squares: no detection
    source = fer_files["angry"][0]
    (index,) = [i for i, p in enumerate(data.path) if p.endswith(source.name)]
    np.testing.assert_array_equal(data.images[index], np.asarray(Image.open(source)))
    assert data.skipped == ()


def test_folder_split_folders_bad_files_and_duplicates(tmp_path, fer_files):
    root = tmp_path / "mine"
    for split in ("a", "b"):
        (root / split / "happy").mkdir(parents=True)
        shutil.copy(fer_files["happy"][0], root / split / "happy" / "x.jpg")  # same bytes twice
    shutil.copy(fer_files["sad"][0], root / "a" / "happy" / "y.jpg")
    (root / "a" / "happy" / "notes.txt").write_text("not an image")
    (root / "a" / "happy" / "more.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    shutil.copy(fer_files["happy"][1], root / "b" / "happy" / "web.jfif")  # a JPEG as browsers save some
    (root / "a" / "happy" / "cut.jpg").write_bytes(fer_files["sad"][1].read_bytes()[:300])
    (root / "a" / "sad").mkdir()  # class folder without images
    shutil.copy(fer_files["sad"][2], root / "stray.jpg")
    shutil.copy(fer_files["sad"][2], root / "b" / "loose.jpg")  # in a split folder, beside its class folders
    data = load_folder(root)
    assert len(data) == 4 and set(data.split) == {"a", "b"} and any(p.endswith("web.jfif") for p in data.path)
    reasons = {s["path"].split("/")[-1]: s["reason"] for s in data.skipped}
    assert reasons["notes.txt"] == "not an image file (suffix '.txt')"
    assert reasons["more.zip"] == ("not an image file (suffix '.zip'); an archive: unpack it and give the unpacked "
                                   "folder")
    assert "truncated" in reasons["cut.jpg"]
    assert reasons["sad"] == "class folder has no images"
    assert "not inside a class folder" in reasons["stray.jpg"] and "not inside a class folder" in reasons["loose.jpg"]
    assert data.meta["duplicates"]["files"] == 1
    copies = [i for i, p in enumerate(data.path) if p.endswith("x.jpg")]
    assert len(copies) == 2 and data.extras["content_hash"][copies[0]] == data.extras["content_hash"][copies[1]]
    with pytest.raises(SourceError, match="strict"):
        load_folder(root, strict=True)
    from emofx.data.dataset import merge
    from emofx.data.sources import culture_part

    other = tmp_path / "theirs" / "sad"  # another culture's folder, with a file of its own to skip
    other.mkdir(parents=True)
    shutil.copy(fer_files["sad"][0], other / "z.jpg")
    (other / "readme.md").write_text("hi")
    both = merge([load_folder(root, culture="A"), load_folder(tmp_path / "theirs", culture="B")])
    parts = {name: culture_part(both, name, "both") for name in ("A", "B")}
    assert len(parts["A"].skipped) == len(data.skipped)
    assert [s["path"][-9:] for s in parts["B"].skipped] == ["readme.md"]


def test_folder_follows_linked_class_folders_once(tmp_path, fer_files):
    """A collection of links into the data (class folders that are symbolic links) is read; a link back up the
    tree is not followed round and round."""
    store = tmp_path / "store" / "happy"
    store.mkdir(parents=True)
    for k, image in enumerate(fer_files["happy"][:3]):
        shutil.copy(image, store / f"h{k}.jpg")
    (tmp_path / "linked" / "train").mkdir(parents=True)
    (tmp_path / "linked" / "train" / "happy").symlink_to(store)
    (tmp_path / "linked" / "train" / "happy_again").symlink_to(tmp_path / "linked")  # a loop
    data = load_folder(tmp_path / "linked")
    assert len(data) == 3 and set(data.label_names) == {"happy"}


def test_folder_errors_name_the_problem(tmp_path, fer_files):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders"):
        load_folder(tmp_path / "empty")
    (tmp_path / "odd" / "grumpy").mkdir(parents=True)
    shutil.copy(fer_files["angry"][0], tmp_path / "odd" / "grumpy" / "a.jpg")
    with pytest.raises(UnknownEmotionError, match=r"grumpy.*accepted names"):
        load_folder(tmp_path / "odd")


def test_folder_of_photos_detects_faces(tmp_path, shared_dataset):
    kdef = shared_dataset("kdef/frontal")
    for code, cls in (("HA", "happy"), ("SA", "sad")):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for actor in ("F01", "M02"):
            (tmp_path / "photos" / cls / f"{actor}.jpg").symlink_to(kdef / f"A{actor}{code}S.JPG")
    data = load_folder(tmp_path / "photos", size=32)
    assert data.meta["faces"] == {"detected": 4} and data.image_shape == (32, 32)


# ---------------------------------------------------------------------------- FER2013 csv and FER+
def pixels_text(path) -> str:
    return " ".join(map(str, np.asarray(Image.open(path)).reshape(-1)))


@pytest.fixture
def fer_csv(tmp_path, fer_files):
    files = [fer_files[c][0] for c in FER_CLASSES]
    codes = [0, 1, 2, 3, 6, 4, 5]  # FER2013 codes of FER_CLASSES
    frame = pd.DataFrame({"emotion": codes, "pixels": [pixels_text(f) for f in files],
                          "Usage": ["Training"] * 5 + ["PublicTest", "PrivateTest"]})
    frame.loc[len(frame)] = [3, "1 2 3", "Training"]  # wrong length
    path = tmp_path / "fer2013.csv"
    frame.to_csv(path, index=False)
    return path, files


def test_fer2013_csv_reads_codes_pixels_and_usage(fer_csv):
    path, files = fer_csv
    data = load_fer2013_csv(path)
    assert len(data) == 7 and data.counts() == {c: 1 for c in data.classes}
    np.testing.assert_array_equal(data.images[3], np.asarray(Image.open(files[3])))
    assert list(data.label_names[:4]) == ["angry", "disgusted", "afraid", "happy"]
    assert list(data.split[-2:]) == ["PublicTest", "PrivateTest"]
    assert data.skipped == ({"path": f"{path}#7", "reason": "row 7: pixels has 3 values; expected 2304 (48x48)"},)
    assert load_fer2013_csv(path, size=96).image_shape == (96, 96)
    with pytest.raises(SourceError, match="pixels has 3 values"):
        load_fer2013_csv(path, strict=True)


def test_fer2013_csv_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,image\n1,2\n")
    with pytest.raises(SourceError, match=r"lacks column\(s\) \['emotion', 'pixels'\]"):
        load_fer2013_csv(path)


def test_ferplus_majority_rule():
    votes = np.array([
        [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # single vote dropped; 4 of 9 is no majority
        [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],  # 6 of 8 -> neutral
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # only single votes: no majority
        [0, 0, 0, 0, 0, 0, 0, 3, 1, 0],  # contempt
        [0, 2, 1, 1, 0, 0, 0, 0, 0, 0],  # 2 of 4 is no majority, but the single votes are dropped: 2 of 2
    ])
    assert list(ferplus_majority(votes)) == [NO_MAJORITY, 0, 9, NO_MAJORITY, 7, 1]


def test_ferplus_joined_by_row_order_to_a_fer2013_csv(tmp_path, fer_csv, shared_dataset):
    path, _ = fer_csv
    votes = pd.read_csv(shared_dataset("ferplus") / "fer2013new.csv", nrows=8)
    votes.to_csv(tmp_path / "fer2013new.csv", index=False)
    data = load_ferplus(tmp_path, images=path)
    winners = ferplus_majority(votes[list(FERPLUS_VOTE_COLUMNS)].to_numpy())
    usable = [r for r in range(7) if 0 <= winners[r] < 8]  # row 7 of the csv has bad pixels
    assert list(data.extras["ferplus_row"]) == usable
    np.testing.assert_array_equal(data.extras["votes"], votes[list(FERPLUS_VOTE_COLUMNS)].to_numpy()[usable])
    assert data.meta["dropped"]["total"] == int(np.sum((winners < 0) | (winners >= 8)))
    assert data.meta["vote_names"][:2] == ["neutral", "happy"]


def test_fer2013_csv_refuses_a_code_past_six_and_shares_a_limit_over_the_classes(tmp_path):
    flat = " ".join(["128"] * 2304)
    frame = pd.DataFrame({"emotion": ["3"] * 18 + ["4"] * 2, "pixels": [flat] * 20, "Usage": ["Training"] * 20})
    frame.to_csv(tmp_path / "fer2013.csv", index=False)
    # 4 rows of 18 happy then 2 sad: evenly over the rows would take 3 happy and 1 sad
    assert load_fer2013_csv(tmp_path / "fer2013.csv", limit=4).counts() == {"happy": 2, "sad": 2}
    frame.loc[0, "emotion"] = "7"  # FER2013 has codes 0-6
    frame.to_csv(tmp_path / "fer2013.csv", index=False)
    with pytest.raises(UnknownEmotionError, match=r"'7'.*or FER2013 codes 0-6"):
        load_fer2013_csv(tmp_path / "fer2013.csv")


def test_ferplus_drops_rows_whose_majority_is_unknown_or_not_a_face(tmp_path, fer_csv):
    path, _ = fer_csv
    votes = np.zeros((8, 10), int)
    votes[:, 1] = 10  # happy
    votes[0] = [0, 1, 0, 0, 0, 0, 0, 0, 9, 0]  # unknown
    votes[1] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]  # not a face
    frame = pd.DataFrame(votes, columns=list(FERPLUS_VOTE_COLUMNS)).assign(Usage="Training")
    frame.to_csv(tmp_path / "fer2013new.csv", index=False)
    data = load_ferplus(tmp_path, images=path)
    assert list(data.extras["ferplus_row"]) == [2, 3, 4, 5, 6]  # row 7 of the csv has bad pixels
    assert set(data.label_names) == {"happy"}
    assert data.meta["dropped"] == {"no_majority": 0, "unknown": 1, "not_face": 1, "total": 2}


def test_ferplus_mapping_moves_the_rows_of_a_repeated_image_to_its_copies(tmp_path):
    """Rows the mapping joins to one file go to its byte-identical copies that no row names, each to one of its own
    split first; a file with other bytes stays unnamed, and rows beyond the copies stay on the shared file."""
    from emofx.data.loaders.fer2013 import read_ferplus_mapping

    files = {"train/angry/Training_1.jpg": b"same", "train/sad/Training_2.jpg": b"same",
             "test/angry/PrivateTest_3.jpg": b"same", "train/angry/Training_4.jpg": b"other"}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    mapping = pd.DataFrame({"row": [0, 1, 2, 3, 4], "usage": ["Training", "PrivateTest", "Training", "Training",
                                                             "PublicTest"],
                            "fer2013_file": ["train/angry/Training_1.jpg"] * 4 + ["train/angry/Training_4.jpg"]})
    mapping.to_csv(tmp_path / "mapping.csv", index=False)
    moved = read_ferplus_mapping(tmp_path / "mapping.csv", tmp_path)
    assert moved["fer2013_file"].tolist() == ["train/angry/Training_1.jpg", "test/angry/PrivateTest_3.jpg",
                                             "train/sad/Training_2.jpg", "train/angry/Training_1.jpg",
                                             "train/angry/Training_4.jpg"]
    as_given = read_ferplus_mapping(tmp_path / "mapping.csv", None)  # no image folder: the file as it is
    assert as_given["fer2013_file"].tolist() == mapping["fer2013_file"].tolist()


def test_ferplus_joined_through_the_mapping(tmp_path, shared_dataset):
    shared = shared_dataset("ferplus")
    votes = pd.read_csv(shared / "fer2013new.csv", nrows=40)
    votes.to_csv(tmp_path / "fer2013new.csv", index=False)
    mapping = pd.read_csv(shared / "ferplus_to_fer2013.csv")
    mapping[mapping.row < 40].to_csv(tmp_path / "ferplus_to_fer2013.csv", index=False)
    data = load_ferplus(tmp_path, images=shared_dataset("fer2013"))
    winners = ferplus_majority(votes[list(FERPLUS_VOTE_COLUMNS)].to_numpy())
    kept = [r for r in range(40) if 0 <= winners[r] < 8]
    assert list(data.extras["ferplus_row"]) == kept
    assert data.meta["dropped"]["total"] == 40 - len(kept)
    names = dict(zip(mapping.row, mapping.fer2013_file))
    assert data.path[0].endswith(names[kept[0]])
    assert set(data.split) <= {"Training", "PublicTest", "PrivateTest"}
    with pytest.raises(FileNotFoundError, match="mapping"):
        load_ferplus(tmp_path, images=shared_dataset("fer2013"), mapping=tmp_path / "none.csv")
    with pytest.raises(SourceError, match=r"fer2013/train does not hold the FER2013 layout the FER\+ mapping names, "
                                          r"train/<class>/<file> .*did you mean .*fer2013\?"):
        load_ferplus(tmp_path, images=shared_dataset("fer2013") / "train")  # one level too deep
    tests = mapping[mapping.usage == "PublicTest"].head(20)  # one labelled test image more, as FER+ row 40
    full = pd.read_csv(shared / "fer2013new.csv", nrows=int(tests.row.max()) + 1)
    winner = ferplus_majority(full[list(FERPLUS_VOTE_COLUMNS)].to_numpy()[tests.row.to_numpy(int)])
    labelled = (winner >= 0) & (winner < 8)
    test_row = tests[labelled].iloc[0]
    pd.concat([votes, full.iloc[[int(test_row.row)]]]).to_csv(tmp_path / "fer2013new.csv", index=False)
    pd.concat([mapping[mapping.row < 40], test_row.to_frame().T.assign(row=40)]).to_csv(
        tmp_path / "ferplus_to_fer2013.csv", index=False)
    (tmp_path / "train_only").mkdir()
    (tmp_path / "train_only" / "train").symlink_to(shared_dataset("fer2013") / "train")
    with pytest.warns(UserWarning, match="train_only has no test folder: the 1 FER\\+ rows of its images are skipped"):
        assert len(load_ferplus(tmp_path, images=tmp_path / "train_only")) == len(kept)


def test_limit_shares_out_over_classes_even_when_the_listing_cycles_through_them():
    from emofx.data.loaders.common import _spread

    cycling = [c for _ in range(10) for c in "abcdefg"]  # 70 files, 7 classes in turn (KDEF's order)
    for limit in (7, 14, 21, 49):
        chosen = _spread(len(cycling), limit, cycling)
        assert len(chosen) == limit == len(set(chosen))
        assert {c: [cycling[i] for i in chosen].count(c) for c in "abcdefg"} == dict.fromkeys("abcdefg", limit // 7)
    assert len({i // 7 for i in _spread(70, 7, cycling)}) == 7  # one per class, from 7 different rounds (people)
    small = ["a"] * 2 + ["b"] * 20  # a class smaller than its share gives the rest to the others
    assert [small[i] for i in _spread(22, 10, small)].count("a") == 2
    with pytest.warns(UserWarning, match=r"limit \(--limit\) 3 is below the source's 7 classes: the sample has no "
                                         r"image of d, e, f, g; give a limit of at least 7"):
        assert sorted(cycling[i] for i in _spread(70, 3, cycling)) == ["a", "b", "c"]


# ---------------------------------------------------------------------------- KDEF and Taiwanese
def test_kdef_codes_subjects_and_angles(tmp_path, shared_dataset):
    kdef = shared_dataset("kdef/frontal")
    data = load_kdef(kdef, limit=14)
    assert len(data) == 14 and data.culture[0] == "Swedish"
    names = [p.split("/")[-1] for p in data.path]
    assert list(data.subject) == [n[1:4] for n in names]
    assert list(data.label_names) == [KDEF_EXPRESSIONS[n[4:6]] for n in names]
    # spread over the classes and, within each, over the sorted files (people)
    assert data.counts() == {c: 2 for c in data.classes} and len(data.classes) == 7 and len(set(data.subject)) >= 7
    folder = tmp_path / "kdef"
    folder.mkdir()
    (folder / "AM05HAS.JPG").symlink_to(kdef / "AM05HAS.JPG")
    (folder / "AM05HAHL.JPG").symlink_to(kdef / "AM05HAS.JPG")  # a half-left view: excluded by default
    (folder / "holiday.jpg").symlink_to(kdef / "AM05SAS.JPG")
    small = load_kdef(folder, culture="Nordic")
    assert list(small.subject) == ["M05"] and list(small.label_names) == ["happy"]
    assert small.meta["other_angles_ignored"] == 1 and small.culture[0] == "Nordic"
    assert small.skipped[0]["reason"].startswith("file name does not follow the KDEF code")
    assert len(load_kdef(folder, angles=("S", "HL"))) == 2
    with pytest.raises(ValueError, match="unknown KDEF angle"):
        load_kdef(folder, angles=("XX",))
    with pytest.raises(ValueError, match="no KDEF angle given"):
        load_kdef(folder, angles=())


def test_file_name_codes_are_read_in_any_letter_case(tmp_path, shared_dataset):
    from emofx.data.loaders.kdef import kdef_inputs

    folder = tmp_path / "kdef"
    folder.mkdir()
    (folder / "am05has.jpg").write_bytes(b"")  # names only: no image is read
    (folder / "BF12SAHL.JPG").write_bytes(b"")
    inputs, other_angles = kdef_inputs(folder)
    assert inputs.subject == ["M05"] and inputs.labels == ["happy"] and other_angles == 1
    tw = tmp_path / "tw"
    tw.mkdir()
    (tw / "0111B02.JPG").symlink_to(shared_dataset("taiwanese") / "faces_256x256" / "0111b02.jpg")
    (tw / "Image_info.xls").symlink_to(shared_dataset("taiwanese") / "Image_info.xls")
    data = load_taiwanese(tw, landmarks="none")
    assert list(data.label_names) == ["happy"] and list(data.subject) == ["01"]
    assert data.meta["unrated"] == 0 and data.extras["agreement"][0] == data.extras["ratings"][0, 0]


def test_a_person_column_is_found_whatever_its_spelling():
    from emofx.data.loaders.manifest import _person_column

    for column in ("Subject ID", "person id", "Participant", "ACTOR"):
        frame = pd.DataFrame({"path": ["a.png"], "emotion": ["happy"], column: ["p1"]})
        assert _person_column(frame, Path("m.csv"))["subject"].tolist() == ["p1"], column


def test_only_small_square_images_are_taken_for_cropped_faces(tmp_path):
    from emofx.data.loaders.common import _looks_cropped

    for name, size in (("square.png", (64, 64)), ("wide.png", (100, 64)), ("large.png", (200, 200))):
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(tmp_path / name)
    assert _looks_cropped([tmp_path / "square.png"])
    assert not _looks_cropped([tmp_path / "square.png", tmp_path / "wide.png"])  # small, but not square
    assert not _looks_cropped([tmp_path / "large.png"])


def test_duplicates_tell_a_file_listed_twice_from_two_files_with_the_same_bytes():
    from emofx.data.loaders.common import count_duplicates

    paths = np.array(["a.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg"])  # a listed twice; c and d the same bytes
    counted = count_duplicates(paths, np.array([1, 1, 2, 3, 3]))
    assert counted == {"files": 2, "groups": 2, "same_file": 1, "examples": [["c.jpg", "d.jpg"], ["a.jpg", "a.jpg"]]}


def test_landmarks_are_described_with_the_faces_left_unaligned():
    from emofx.data.loaders import describe_landmarks

    partly = {"method": "eyes", "quality": {"missing": 6, "ok": 15}, "aligned": 15, "faces": 21}
    assert describe_landmarks(partly) == "eyes (missing 6, ok 15); aligned 15 of 21 faces: 6 kept unaligned (no eyes " \
                                         "found)"
    assert describe_landmarks({**partly, "aligned": 21}).endswith("aligned 21 of 21 faces")
    assert describe_landmarks({"method": "none"}) == "none"


def test_a_folder_of_another_sets_photos_names_the_format_it_looks_like(tmp_path, shared_dataset):
    kdef, taiwanese = shared_dataset("kdef") / "frontal", shared_dataset("taiwanese")
    folder = tmp_path / "mixed_up"
    folder.mkdir()
    for name in ("0111b02.jpg", "0121c01.jpg"):
        (folder / name).symlink_to(taiwanese / "faces_256x256" / name)
    (folder / "AM05HAHL.JPG").symlink_to(kdef / "AM05HAS.JPG")  # a KDEF name, of an angle not asked for
    with pytest.raises(SourceError, match=r"no KDEF photos with angle\(s\) \['S'\] under .*mixed_up; found 1 photos of "
                                          r"other angles \(--angles\) and 2 other files .*: --format taiwanese\?"):
        load_kdef(folder)
    with pytest.raises(SourceError, match=r"no Taiwanese face images .*Image_info.xls is one file, neither"):
        load_taiwanese(taiwanese / "Image_info.xls")
    (tmp_path / "kdef.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(SourceError, match=r"no KDEF photos .*kdef.zip is an archive; unpack it and give the unpacked"):
        load_kdef(tmp_path / "kdef.zip")
    for views, problem in (((4,), r"unknown Taiwanese view\(s\) \[4\]"), ((), "no Taiwanese view given")):
        with pytest.raises(ValueError, match=problem):
            load_taiwanese(folder, views=views)


def test_taiwanese_codes_ratings_and_no_face(tmp_path, shared_dataset):
    shared = shared_dataset("taiwanese")
    folder = tmp_path / "tw"
    (folder / "faces").mkdir(parents=True)
    names = ["0111b02.jpg", "0121c01.jpg", "1201002.jpg", "1111d05.jpg", "3031g10.jpg"]
    for name in names:
        (folder / "faces" / name).symlink_to(shared / "faces_256x256" / name)
    (folder / "Image_info.xls").symlink_to(shared / "Image_info.xls")
    data = load_taiwanese(folder)
    assert list(data.subject) == ["01", "01", "12", "30"]
    assert list(data.label_names) == ["happy", "sad", "neutral", "surprised"]
    assert data.skipped[0]["path"].endswith("1111d05.jpg") and "no face found" in data.skipped[0]["reason"]
    ratings, agreement = data.extras["ratings"], data.extras["agreement"]
    assert ratings.shape == (4, 6) and data.meta["unrated"] == 0
    assert agreement[0] == ratings[0, 0] and agreement[1] == ratings[1, 1]  # happy, sad columns
    assert np.isnan(agreement[2])  # neutral was not a rating option
    np.testing.assert_allclose(ratings.sum(axis=1), 1.0, atol=0.03)
    kept = load_taiwanese(folder, center_crop_fallback=True, ratings=False)
    assert len(kept) == 5 and kept.meta["faces"] == {"center_crop": 1, "detected": 4}
    assert "ratings" not in kept.extras


# ---------------------------------------------------------------------------- .mat and manifest round trips
def test_mat_round_trip(tmp_path, fer_files):
    images = np.stack([np.asarray(Image.open(fer_files[c][0])) for c in FER_CLASSES])
    labels = np.array([1, 2, 3, 4, 7, 5, -1])  # 1-based TFD order; -1 unlabelled
    subjects = np.array(["s1", "s2", "s3", "s4", "s5", "s6", "s7"], dtype=object)
    path = tmp_path / "faces.mat"
    scipy.io.savemat(path, {"images": images, "labels": labels.reshape(-1, 1), "subjects": subjects})
    data = load_mat(path, culture="Canadian")
    assert len(data) == 6 and list(data.subject) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert list(data.label_names) == ["angry", "disgusted", "afraid", "happy", "neutral", "sad"]
    np.testing.assert_array_equal(data.images, images[:6])
    assert "unlabelled" in data.skipped[0]["reason"]
    # H x W x N floats in [0, 1] with text labels
    scipy.io.savemat(path, {"images": np.transpose(images / 255.0, (1, 2, 0)),
                            "labels": np.array(["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
                                               dtype=object)})
    floats = load_mat(path)
    assert len(floats) == 7 and floats.label_names[-1] == "surprised"
    assert np.abs(floats.images.astype(int) - images).max() <= 1
    scipy.io.savemat(path, {"pictures": images})
    with pytest.raises(SourceError, match=r"lacks variable\(s\) \['images', 'labels'\]"):
        load_mat(path)


def test_mat_layout_and_label_base_are_said_not_guessed_when_ambiguous(tmp_path):
    square = np.stack([np.full((8, 8), 10 * k, np.uint8) for k in range(8)], axis=-1)  # H x W x N, N = H = W
    labels = np.arange(1, 9) % 6  # codes 0-5: a 0 occurs, so they are read from 0
    path = tmp_path / "square.mat"
    scipy.io.savemat(path, {"images": square, "labels": labels.reshape(-1, 1)})
    with pytest.raises(SourceError, match="N x H x W and H x W x N both fit; say which"):
        load_mat(path, size=8)
    data = load_mat(path, size=8, layout="HWN")
    assert [int(im.mean()) for im in data.images] == [10 * k for k in range(8)]  # image k is all 10 k
    assert data.meta["label_base"] == 0
    from emofx.cli import main

    assert main(["prepare", str(path), "--format", "mat", "--size", "8", "--layout", "HWN",
                 "--out", str(tmp_path / "square.npz")]) == 0
    one_based = np.arange(1, 7).reshape(-1, 1)  # codes 1..6 with no 0: 1-based unless told
    scipy.io.savemat(path, {"images": np.zeros((6, 8, 8), np.uint8), "labels": one_based})
    assert list(load_mat(path, size=8).label_names)[:2] == ["angry", "disgusted"]
    assert list(load_mat(path, size=8, label_base=0).label_names)[:2] == ["disgusted", "afraid"]


def test_manifest_round_trip(tmp_path, fer_files):
    rows = []
    for i, cls in enumerate(FER_CLASSES):
        target = tmp_path / "imgs" / f"{i}.png"
        target.parent.mkdir(exist_ok=True)
        Image.open(fer_files[cls][0]).save(target)
        rows.append({"path": f"imgs/{i}.png", "emotion": cls, "culture": "Korean" if i % 2 else "",
                     "subject": f"p{i % 3}", "split": "train" if i < 5 else "test"})
    rows.append({"path": "imgs/missing.png", "emotion": "happy", "culture": "", "subject": "", "split": ""})
    rows.append({"path": "imgs", "emotion": "sad", "culture": "", "subject": "", "split": ""})  # a folder
    pd.DataFrame(rows).to_csv(tmp_path / "faces.csv", index=False)
    data = load_manifest(tmp_path / "faces.csv", culture="American")
    assert len(data) == 7
    assert "a folder, not an image file (manifest row 8)" in data.skipped[1]["reason"]
    assert list(data.culture[:3]) == ["American", "Korean", "American"]
    assert list(data.subject[:4]) == ["p0", "p1", "p2", "p0"] and list(data.split[-2:]) == ["test", "test"]
    np.testing.assert_array_equal(data.images[0], np.asarray(Image.open(fer_files["angry"][0])))
    assert "file not found" in data.skipped[0]["reason"]
    assert data.meta["duplicates"]["files"] == 0
    pd.DataFrame(rows[:2] + rows[:1]).to_csv(tmp_path / "twice.csv", index=False)  # one file listed twice
    twice = load_manifest(tmp_path / "twice.csv")
    assert twice.meta["duplicates"] == {"files": 1, "groups": 1, "same_file": 1,
                                        "examples": [[twice.path[0], twice.path[0]]]}
    from emofx.cli.prepare import remaining_duplicates

    assert remaining_duplicates(twice) == twice.meta["duplicates"]  # counted alike before and after --exclude
    pd.DataFrame({"path": ["imgs/0.png"], "emotion": ["grumpy"]}).to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(UnknownEmotionError, match=r"odd.csv.*grumpy.*accepted names"):
        load_manifest(tmp_path / "odd.csv")
    pd.DataFrame({"path": ["imgs/0.png", "imgs/1.png"], "emotion": ["", ""]}).to_csv(tmp_path / "unlabelled.csv",
                                                                                   index=False)
    # the error says why every row was left out
    with pytest.raises(SourceError, match=r"no usable rows in .*unlabelled.csv \(2 skipped: .*#0: row 0: empty.*\); "
                                          r"every image needs an emotion, e.g. the one its search asked for"):
        load_manifest(tmp_path / "unlabelled.csv")
    pd.DataFrame({"file": ["imgs/0.png"]}).to_csv(tmp_path / "nocols.csv", index=False)
    with pytest.raises(SourceError, match=r"lacks column"):
        load_manifest(tmp_path / "nocols.csv")


def test_a_researchers_own_manifest_as_a_spreadsheet_writes_it(tmp_path, fer_files, monkeypatch):
    """Semicolons and a BOM (a spreadsheet's export), a person column called person, paths relative to the current
    folder (said, with --root), and each culture's part counting its own faces and skipped inputs."""
    from emofx.data.sources import culture_part

    rows = []
    for i, cls in enumerate(FER_CLASSES):
        target = tmp_path / "photos" / f"IMG_{i}.png"
        target.parent.mkdir(exist_ok=True)
        Image.open(fer_files[cls][0]).save(target)
        rows.append(f"photos/IMG_{i}.png;{cls};{'Swedish' if i < 4 else 'Taiwanese'};p{i % 2}")
    rows.append("photos/gone.png;happy;Taiwanese;p9")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "labels.csv").write_bytes(("\ufeffpath;emotion;culture;person\n" + "\n".join(rows) + "\n").encode())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=r"some name files relative to the current folder .*: pass --root \."):
        load_manifest(meta / "labels.csv")  # the paths are written from the folder above
    data = load_manifest(meta / "labels.csv", root=tmp_path)
    assert len(data) == len(FER_CLASSES) and sorted(set(data.subject)) == ["p0", "p1"]
    swedish, taiwanese = (culture_part(data, name, "labels.csv") for name in ("Swedish", "Taiwanese"))
    assert swedish.skipped == () and [s["reason"] for s in taiwanese.skipped] == ["file not found (manifest row 7)"]
    assert sum(swedish.meta["faces"].values()) == 4 and sum(taiwanese.meta["faces"].values()) == len(data) - 4
    (meta / "commas.csv").write_text("path;emotion;culture;Subject, as written\n" + "\n".join(rows[:2]) + "\n")
    with pytest.warns(UserWarning, match=r"column\(s\) Subject, as written not read"):  # split on ;, not on ,
        assert len(load_manifest(meta / "commas.csv", root=tmp_path)) == 2
    (meta / "Person.csv").write_text("\npath,emotion,Person\n" + "\n".join(  # a blank first line, a capital P
        f"{r.split(';')[0]},{r.split(';')[1]},{r.split(';')[3]}" for r in rows[:2]) + "\n")
    assert list(load_manifest(meta / "Person.csv", root=tmp_path).subject) == ["p0", "p1"]
    (meta / "other.csv").write_text("path,emotion,Participant No\n" + "\n".join(
        f"{r.split(';')[0]},{r.split(';')[1]},{r.split(';')[3]}" for r in rows[:2]) + "\n")
    with pytest.warns(UserWarning, match=r"names no person \(subject, person, .*column\(s\) Participant No not read"):
        assert set(load_manifest(meta / "other.csv", root=tmp_path).subject) == {""}
    (meta / "cased.csv").write_text("path,emotion,culture,subject\n" + "\n".join(
        f"{r.split(';')[0]},{r.split(';')[1]},{'swedish' if k else 'Swedish'},p{k}" for k, r in enumerate(rows[:2])))
    with pytest.warns(UserWarning, match=r"culture names 'Swedish' and 'swedish' differ only in letter case"):
        load_manifest(meta / "cased.csv", root=tmp_path)


# ---------------------------------------------------------------------------- registry and synthetic
def test_registry_and_option_checks(tmp_path):
    assert set(FORMATS) == {"folder", "fer2013-csv", "ferplus", "kdef", "taiwanese", "mat", "manifest", "synthetic"}
    with pytest.raises(ValueError, match="unknown format 'jpeg'"):
        load(tmp_path, "jpeg")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['dialect'\]"):
        load(tmp_path, "kdef", dialect="eyes")


def test_synthetic_through_the_registry():
    pytest.importorskip("emofx.data.synthetic")
    data = load("synthetic", "synthetic", dialect="eyes", n_per_class=3, seed=1)
    assert len(data) == 3 * len(data.classes) and "region_masks" in data.extras
    again = load("synthetic", "synthetic", dialect="eyes", n_per_class=3, seed=1)
    np.testing.assert_array_equal(again.images, data.images)
    with pytest.raises(ValueError, match="source 'synthetic'"):
        load("faces/", "synthetic")


def test_a_named_real_source_keeps_its_culture_when_given_a_synthetic_dialect(tmp_path, monkeypatch):
    """Notebook 02's default culture is 'eyes' (a synthetic dialect): run on KDEF without changing it, the photos
    were labelled 'eyes'; they are Swedish, with a warning, and a culture of the user's own is kept."""
    from emofx.data import loaders, sources

    (tmp_path / "kdef" / "frontal").mkdir(parents=True)
    monkeypatch.setenv("EMOFX_DATA", str(tmp_path))
    asked = []
    monkeypatch.setattr(loaders, "load", lambda folder, fmt, culture, **_: asked.append(culture))
    with pytest.warns(UserWarning, match="culture 'eyes' is a synthetic dialect; the kdef photos are labelled Swedish"):
        sources.load_source("kdef", "eyes")
    sources.load_source("kdef", "Scandinavian")
    sources.load_source("kdef", "")
    assert asked == ["Swedish", "Scandinavian", "Swedish"]


def test_a_prepared_file_of_another_size_than_asked_says_so(tmp_path):
    from emofx.data import sources
    from emofx.data.synthetic import make_synthetic

    path = str(make_synthetic("eyes", n_per_class=2, size=48).save(tmp_path / "faces.npz"))
    with pytest.warns(UserWarning, match=r"holds 48x48 faces, not the 64x64 asked for: .*--size 64"):
        assert sources.load_source(path, "", size=64).image_shape == (48, 48)
    # synthetic faces saved to a file are still synthetic (notebook 02 trains its small model on them)
    assert sources.is_real(path) and not sources.is_real(path, sources.load_source(path, ""))
