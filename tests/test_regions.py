"""Facial regions: ground truth on synthetic faces, the eye-cascade method on real crops, the template."""

from __future__ import annotations

import numpy as np
import pytest

from emofx.data.dataset import FaceDataset
from emofx.data.regions import LANDMARK_NAMES, REGION_NAMES, RegionError, face_regions, regions_from_eyes, template_eyes
from emofx.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic("universal", n_per_class=4, seed=1)


@pytest.fixture(scope="module")
def kdef_crops(shared_dataset):
    """Eight KDEF faces (different actors and expressions) cropped to 48x48 by emofx.data.faces."""
    from emofx.data.faces import FaceOptions, face_from_bytes

    files = sorted(shared_dataset("kdef/frontal").glob("*.JPG"))[::123][:8]
    faces = [face_from_bytes(f.read_bytes(), FaceOptions(size=48))[0] for f in files]
    assert all(face is not None for face in faces)
    return FaceDataset.from_label_names(np.stack(faces), [f.name[4:6] for f in files])


def _assert_partition(maps, n, shape):
    assert maps.masks.shape == (n, len(REGION_NAMES), *shape) and maps.masks.dtype == bool
    assert np.all(maps.masks.sum(axis=1) == 1)  # every pixel in exactly one region
    assert maps.landmarks.shape == (n, len(LANDMARK_NAMES), 2)
    assert maps.region_names == REGION_NAMES == ("eyes", "brows", "nose", "mouth", "rest")


def test_truth_uses_the_synthetic_masks_and_places_landmarks_on_them(synthetic):
    maps = face_regions(synthetic)  # auto -> truth
    assert maps.method == "truth" and set(maps.image_method) == {"truth"}
    _assert_partition(maps, len(synthetic), (48, 48))
    truth = synthetic.extras["region_masks"]
    for k, name in enumerate(synthetic.region_names):
        assert np.array_equal(maps.region(name), truth[:, k])
    lm = {name: maps.landmarks[:, i] for i, name in enumerate(LANDMARK_NAMES)}
    assert np.all(lm["left_eye"][:, 0] < lm["right_eye"][:, 0])
    eye_y = (lm["left_eye"][:, 1] + lm["right_eye"][:, 1]) / 2
    assert np.all(eye_y < lm["nose_tip"][:, 1]) and np.all(lm["nose_tip"][:, 1] < lm["mouth_centre"][:, 1])
    for i in range(len(synthetic)):
        for corner in ("mouth_left", "mouth_right"):
            x, y = np.round(lm[corner][i]).astype(int)
            assert maps.region("mouth")[i, y, x]
        x, y = np.round(lm["left_eye"][i]).astype(int)
        assert maps.region("eyes")[i, y, x]
    # Mouth width from the corners: afraid (stretched) wider than surprised (rounded).
    width = lm["mouth_right"][:, 0] - lm["mouth_left"][:, 0]
    afraid, surprised = (synthetic.classes.index(c) for c in ("afraid", "surprised"))
    assert width[synthetic.labels == afraid].mean() > 1.5 * width[synthetic.labels == surprised].mean()


def test_template_follows_the_margin_the_faces_were_cut_with(synthetic):
    from dataclasses import replace

    from emofx.data.landmarks import aligned_eyes

    wide = replace(synthetic, meta={**synthetic.meta, "face_options": {"detect": True, "margin": 0.3}})
    eyes = face_regions(wide, "template").landmarks[0, :2]
    assert np.allclose(eyes, aligned_eyes(0.3) * 48 - 0.5, atol=1e-5)
    assert not np.allclose(eyes, template_eyes(48, 48), atol=0.5)  # the default margin's eyes are further apart
    as_given = replace(synthetic, meta={**synthetic.meta, "face_options": {"detect": False, "margin": 0.3}})
    assert np.allclose(face_regions(as_given, "template").landmarks[0, :2], template_eyes(48, 48))


def test_template_scales_with_the_image_and_is_the_same_for_every_face(synthetic):
    maps = face_regions(synthetic, "template")
    assert maps.method == "template" and set(maps.image_method) == {"template"}
    _assert_partition(maps, len(synthetic), (48, 48))
    assert np.all(maps.masks == maps.masks[:1])
    assert np.allclose(maps.landmarks[:, :2], template_eyes(48, 48))
    assert np.allclose(template_eyes(96, 96), (template_eyes(48, 48) + 0.5) * 2 - 0.5)
    # On synthetic faces the template overlaps the true regions far better than chance.
    truth = face_regions(synthetic, "truth")
    for name in ("eyes", "mouth"):
        t, m = truth.region(name), maps.region(name)
        assert (t & m).sum() / t.sum() > 0.5, name


def test_regions_follow_the_eye_axis():
    """A face tilted by 30 degrees: the mouth lies along the rotated down direction."""
    angle = np.deg2rad(30)
    along = np.array([np.cos(angle), np.sin(angle)])
    mid, d = np.array([48.0, 40.0]), 30.0
    eyes = np.stack([mid - along * d / 2, mid + along * d / 2])[None]
    masks, landmarks = regions_from_eyes(eyes, 128, 128)
    down = np.array([-along[1], along[0]])
    assert np.allclose(landmarks[0, LANDMARK_NAMES.index("mouth_centre")], mid + 1.02 * d * down, atol=1e-3)
    ys, xs = np.nonzero(masks[0, REGION_NAMES.index("mouth")])
    assert np.allclose([xs.mean(), ys.mean()], mid + 1.02 * d * down, atol=1.0)
    assert np.all(masks.sum(axis=1) == 1)


def test_regions_from_eyes_in_chunks_are_those_of_all_faces_at_once():
    # All faces at once built float64 coordinate grids of every face: 4.4 GB for FER2013's 35,887 (emofx compare).
    eyes = np.broadcast_to(template_eyes(48, 48), (7, 2, 2)) + np.random.default_rng(2).normal(0, 2, (7, 2, 2))
    whole = regions_from_eyes(eyes, 48, 48, chunk=7)
    for chunk in (1, 3):
        masks, landmarks = regions_from_eyes(eyes, 48, 48, chunk=chunk)
        np.testing.assert_array_equal(masks, whole[0])
        np.testing.assert_array_equal(landmarks, whole[1])
    assert whole[0].shape == (7, len(REGION_NAMES), 48, 48) and whole[1].dtype == np.float32
    assert len(set(map(bytes, np.packbits(whole[0], axis=1)))) == 7  # each face its own regions
    none = regions_from_eyes(np.zeros((0, 2, 2)), 48, 48)
    assert none[0].shape == (0, len(REGION_NAMES), 48, 48) and none[1].shape == (0, len(LANDMARK_NAMES), 2)


def test_eye_cascade_on_real_crops(kdef_crops):
    maps = face_regions(kdef_crops)  # auto -> eyes for data without ground truth
    assert maps.method == "eyes"
    _assert_partition(maps, len(kdef_crops), (48, 48))
    found = maps.image_method == "eyes"
    assert found.sum() >= 6, maps.image_method
    eyes = maps.landmarks[found][:, :2]
    distance = eyes[:, 1, 0] - eyes[:, 0, 0]
    assert np.all((distance > 10) & (distance < 24))  # a 48-px crop's eyes are ~16 px apart
    assert np.all(np.abs(eyes - template_eyes(48, 48)) < 6)  # near the mean face, but found per image
    assert not np.allclose(eyes, template_eyes(48, 48), atol=0.25)
    # Eyes are darker than the cheeks below them.
    for image, (left, right) in zip(kdef_crops.images[found], eyes):
        for x, y in (left, right):
            xi, yi = int(round(x)), int(round(y))
            assert image[yi - 1:yi + 2, xi - 1:xi + 2].mean() < image[yi + 7:yi + 10, xi - 1:xi + 2].mean()
    frame = maps.to_frame()
    assert list(frame["region_method"]) == list(maps.image_method)
    assert maps.info()["image_methods"].get("eyes") == int(found.sum())


def test_faces_without_visible_eyes_fall_back_to_the_template():
    blank = FaceDataset.from_label_names(np.full((2, 48, 48), 128, np.uint8), ["happy", "sad"])
    maps = face_regions(blank, "eyes")
    assert maps.method == "eyes" and list(maps.image_method) == ["template", "template"]
    assert np.allclose(maps.landmarks[:, :2], template_eyes(48, 48))


def test_bad_requests(synthetic):
    with pytest.raises(RegionError, match="unknown region method"):
        face_regions(synthetic, "landmarks68")
    plain = FaceDataset.from_label_names(synthetic.images[:2], ["happy", "sad"])
    with pytest.raises(RegionError, match="no ground-truth region masks"):
        face_regions(plain, "truth")
    with pytest.raises(RegionError, match="unknown region"):
        face_regions(synthetic).region("ears")


def test_regions_found_differently_for_two_cultures_are_said():
    from emofx.data.regions import RegionMaps
    from emofx.study.comparison import regions_notes

    def maps(*ways: str) -> RegionMaps:
        n = len(ways)
        return RegionMaps(np.zeros((n, 5, 4, 4), bool), ("eyes", "brows", "nose", "mouth", "rest"),
                          np.zeros((n, 1, 2), np.float32), ("x",), "landmarks", np.array(ways))

    alike = regions_notes({"A": maps("landmarks", "landmarks"), "B": maps("landmarks", "landmarks", "landmarks")})
    assert alike == ["regions: landmarks (A: landmarks 2), landmarks (B: landmarks 3)"]
    unlike = regions_notes({"A": maps("landmarks", "landmarks"), "B": maps("eyes", "eyes", "template")})
    assert unlike[0] == "regions: landmarks (A: landmarks 2), landmarks (B: eyes 2, template 1)"
    assert unlike[1].startswith("the cultures' facial regions were found in different ways")


def test_a_dataset_prepared_with_eye_centres_only_has_no_68_point_regions():
    """--landmarks eyes stores an all-NaN (N, 68, 2) array: regions by landmarks are refused as for a dataset without
    landmarks, and 'auto' finds them from the eyes instead of calling them 'landmarks'."""
    from dataclasses import replace

    faces = make_synthetic("mouth", n_per_class=2, seed=0, size=48, classes=("happy", "sad"))
    eyes_only = replace(faces, extras={"landmarks": np.full((len(faces), 68, 2), np.nan, np.float32)})
    with pytest.raises(RegionError, match="has no 68-point landmarks"):
        face_regions(eyes_only, "landmarks")
    assert face_regions(eyes_only, "auto").method == "eyes"


def test_overlapping_true_masks_go_to_the_region_first_in_priority():
    """Ground-truth masks that overlap are made disjoint as the template is: eyes, brows, mouth, then nose."""
    masks = np.zeros((1, 4, 16, 16), bool)  # eyes, brows, nose, mouth
    masks[0, 0, 4, [3, 4, 11, 12]] = True
    masks[0, 1, 3:5, 2:14] = True  # brows overlap the eyes on row 4
    masks[0, 2, 6:12, 7:9] = True  # nose down to row 11
    masks[0, 3, 11:13, 5:11] = True  # mouth from row 11: overlaps the nose's last row
    data = FaceDataset.from_label_names(np.zeros((1, 16, 16), np.uint8), ["happy"],
                                        extras={"region_masks": masks},
                                        meta={"region_names": ["eyes", "brows", "nose", "mouth"]})
    maps = face_regions(data, "truth")
    assert np.array_equal(maps.region("eyes")[0], masks[0, 0])
    assert np.array_equal(maps.region("brows")[0], masks[0, 1] & ~masks[0, 0])
    assert np.array_equal(maps.region("mouth")[0], masks[0, 3])
    assert np.array_equal(maps.region("nose")[0], masks[0, 2] & ~masks[0, 3])
    assert maps.region("nose")[0].sum() == 10 and maps.region("mouth")[0].sum() == 12


def test_template_follows_the_margin_of_aligned_crops_too(synthetic):
    from dataclasses import replace

    from emofx.data.landmarks import aligned_eyes

    aligned = replace(synthetic, meta={**synthetic.meta, "face_options": {"detect": False, "align": True,
                                                                          "margin": 0.3}})
    assert np.allclose(face_regions(aligned, "template").landmarks[0, :2], aligned_eyes(0.3) * 48 - 0.5, atol=1e-5)
