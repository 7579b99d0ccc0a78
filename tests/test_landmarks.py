"""Landmarks on the original photo, alignment by the eyes, and regions from the 68 points."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from emofx.data import landmarks as lm
from emofx.data.faces import FaceOptions, extract_face
from emofx.data.regions import FEATURE_REGIONS, face_regions, regions_from_eyes, regions_from_landmarks, template_eyes
from emofx.data.synthetic import make_synthetic

needs_dlib = pytest.mark.skipif(not lm.dlib_available(), reason='dlib not installed: pip install "emofx[landmarks]"')


# ---------------------------------------------------------------------------- geometry
def test_alignment_puts_the_eyes_on_the_fixed_positions():
    eyes = np.array([[120.0, 210.0], [190.0, 180.0]])  # tilted, 76 px apart
    matrix = lm.alignment_matrix(eyes, 48)
    target = np.array([[fx * 48 - 0.5, fy * 48 - 0.5] for fx, fy in lm.ALIGNED_EYES])
    np.testing.assert_allclose(lm.transform_points(eyes, matrix), target, atol=1e-4)
    # A similarity transform: equal scale on both axes, no shear.
    rotation = matrix[:, :2]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(2) * np.linalg.det(rotation), atol=1e-6)


def test_a_smaller_margin_frames_aligned_faces_closer():
    """The margin means what it means for unaligned crops: border per side as a fraction of the face."""
    np.testing.assert_allclose(lm.aligned_eyes(0.1), lm.ALIGNED_EYES)
    default, tight = lm.aligned_eyes(0.1), lm.aligned_eyes(0.0)
    # Eye distance 0.34 of the side at margin 0.1; a face 1.2 times as large in the crop at margin 0.
    assert tight[1, 0] - tight[0, 0] == pytest.approx(0.34 * 1.2)
    np.testing.assert_allclose((tight - 0.5) / (default - 0.5), 1.2)
    eyes = np.array([[120.0, 210.0], [190.0, 180.0]])
    np.testing.assert_allclose(lm.transform_points(eyes, lm.alignment_matrix(eyes, 48, 0.0)), tight * 48 - 0.5,
                               atol=1e-4)


def test_warp_follows_the_matrix_on_a_drawn_dot():
    photo = np.zeros((300, 240), np.uint8)
    cv2.circle(photo, (150, 100), 6, 255, -1)
    eyes = np.array([[100.0, 120.0], [160.0, 120.0]])
    matrix = lm.alignment_matrix(eyes, 48)
    face = lm.warp_face(photo, matrix, 48)
    expected = lm.transform_points(np.array([[150.0, 100.0]]), matrix)[0]
    rows, cols = np.nonzero(face > 64)
    weights = face[rows, cols].astype(float)
    centre = np.array([np.average(cols, weights=weights), np.average(rows, weights=weights)])
    np.testing.assert_allclose(centre, expected, atol=0.3)


def test_crop_matrix_maps_photo_pixels_into_the_resized_crop():
    matrix = lm.crop_matrix(10, 20, 96, 48)  # a 96-px square at (10, 20) becomes 48 px
    # The centre of the square's first 2x2 block is the crop's first pixel centre.
    np.testing.assert_allclose(lm.transform_points(np.array([[10.5, 20.5]]), matrix), [[0.0, 0.0]], atol=1e-5)
    np.testing.assert_allclose(lm.transform_points(np.array([[104.5, 114.5]]), matrix), [[47.0, 47.0]], atol=1e-5)


# ---------------------------------------------------------------------------- method choice and bad input
def test_auto_is_dlib68_on_photos_and_none_on_cropped_faces(monkeypatch):
    monkeypatch.setattr(lm, "dlib_available", lambda: True)
    assert lm.resolve_method("auto", photos=True) == "dlib68"
    assert lm.resolve_method("auto", photos=False) == "none"
    assert lm.resolve_method("eyes", photos=True) == "eyes"
    with pytest.raises(ValueError, match="unknown landmark method 'nose'"):
        lm.resolve_method("nose", photos=True)


def test_missing_dlib_names_the_install_command_and_never_falls_back_silently(monkeypatch):
    monkeypatch.setattr(lm, "dlib_available", lambda: False)
    with pytest.raises(lm.LandmarkError, match=r'pip install "emofx\[landmarks\]".*--landmarks eyes'):
        lm.resolve_method("auto", photos=True)
    assert lm.resolve_method("eyes", photos=True) == "eyes"  # the fallback when the user asks for it


def test_prepare_without_dlib_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    from emofx.cli import main

    monkeypatch.setattr(lm, "dlib_available", lambda: False)
    folder = tmp_path / "photos" / "happy"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((200, 200), 128, np.uint8))
    out = tmp_path / "out.npz"
    assert main(["prepare", str(tmp_path / "photos"), "--format", "folder", "--faces", "detect",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "emofx[landmarks]" in err and not out.exists()


def test_align_needs_landmarks():
    with pytest.raises(ValueError, match="aligning faces needs landmarks"):
        FaceOptions(align=True, landmarks="none")


# ---------------------------------------------------------------------------- regions from 68 points
def _face_points(scale: float = 1.0) -> np.ndarray:
    """A plausible 68-point face on a 48-px crop (iBUG layout), eyes at the aligned positions."""
    points = np.zeros((68, 2))
    points[0:17] = np.stack([np.linspace(6, 42, 17), 24 + 18 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    points[17:22] = np.stack([np.linspace(9, 21, 5), [15, 13.5, 13, 13.5, 14.5]], axis=1)
    points[22:27] = np.stack([np.linspace(27, 39, 5), [14.5, 13.5, 13, 13.5, 15]], axis=1)
    points[27:31] = np.stack([np.full(4, 23.5), np.linspace(19, 28, 4)], axis=1)
    points[31:36] = np.stack([np.linspace(20, 27, 5), [29, 29.5, 30, 29.5, 29]], axis=1)
    for start, cx in ((36, 15.34), (42, 31.66)):
        angles = np.linspace(0, 2 * np.pi, 7)[:-1]
        points[start:start + 6] = np.stack([cx + 3.5 * np.cos(angles), 19.18 + 1.5 * np.sin(angles)], axis=1)
    angles = np.linspace(np.pi, -np.pi, 13)[:-1]
    points[48:60] = np.stack([23.5 + 7 * np.cos(angles), 36 + 3 * scale * np.sin(angles)], axis=1)
    centre = points[48:60].mean(axis=0)
    points[60:68] = centre + 0.5 * (points[48:60][[0, 2, 3, 4, 6, 8, 9, 10]] - centre)  # inner lips
    return points


def test_landmark_regions_cover_their_points_and_partition_the_face():
    points = _face_points()[None]
    masks, named = regions_from_landmarks(points, 48, 48)
    assert masks.shape == (1, 5, 48, 48) and np.all(masks.sum(axis=1) == 1)
    for name, index in (("eyes", 36), ("eyes", 45), ("brows", 19), ("nose", 30), ("mouth", 51), ("mouth", 57)):
        x, y = np.round(points[0, index]).astype(int)
        assert masks[0, FEATURE_REGIONS.index(name), y, x], f"point {index} is not in the {name} region"
    np.testing.assert_allclose(named[0, 0], points[0, 36:42].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(named[0, 4], points[0, 48], atol=1e-5)


def test_an_open_mouth_grows_the_mouth_region():
    closed, _ = regions_from_landmarks(_face_points(scale=0.5)[None], 48, 48)
    wide_open, _ = regions_from_landmarks(_face_points(scale=2.5)[None], 48, 48)
    mouth = FEATURE_REGIONS.index("mouth")
    assert wide_open[0, mouth].sum() > 1.5 * closed[0, mouth].sum()


def test_faces_without_68_points_fall_back_and_say_so():
    data = make_synthetic("universal", n_per_class=1, seed=3)
    points = np.full((len(data), 68, 2), np.nan, np.float32)
    points[0] = _face_points()
    data.extras.pop("region_masks")
    data.extras["landmarks"] = points
    maps = face_regions(data)  # auto -> landmarks when the dataset carries them
    assert maps.method == "landmarks" and maps.image_method[0] == "landmarks"
    assert set(maps.image_method[1:]) <= {"eyes", "template"}


@needs_dlib
def test_dlib_landmark_regions_agree_with_synthetic_truth_better_than_the_template():
    """The whole landmark path (dlib on the enlarged crop, polygons) against the generator's true regions."""
    data = make_synthetic("universal", n_per_class=6, seed=0)
    truth = face_regions(data, "truth")
    marks = [lm.dlib68(image, (0, 0, 48, 48), upscale_to=192) for image in data.images]
    masks, named = regions_from_landmarks(np.stack([m.points for m in marks]), 48, 48)
    template, _ = regions_from_eyes(np.broadcast_to(template_eyes(48, 48), (len(data), 2, 2)), 48, 48)

    def iou(pred):
        return [(truth.masks[:, r] & pred[:, r]).sum() / (truth.masks[:, r] | pred[:, r]).sum()
                for r in range(len(FEATURE_REGIONS))]

    assert np.mean(iou(masks)) > np.mean(iou(template)) + 0.05
    eye_error = np.linalg.norm(named[:, :2] - truth.landmarks[:, :2], axis=-1).mean()
    assert eye_error < 2.0  # pixels, on 48-px faces


# ---------------------------------------------------------------------------- real photos
@needs_dlib
def test_dlib68_on_kdef_photos_aligns_the_eyes(shared_dataset):
    files = sorted(shared_dataset("kdef/frontal").glob("*.JPG"))[::140][:7]
    options = FaceOptions(size=48, landmarks="dlib68", align=True)
    faces = [extract_face(f.read_bytes(), options) for f in files]
    assert all(not isinstance(f, str) and f.aligned and f.landmarks.quality in ("ok", "outside") for f in faces)
    target = np.array([[fx * 48 - 0.5, fy * 48 - 0.5] for fx, fy in lm.ALIGNED_EYES])
    for face in faces:
        np.testing.assert_allclose(face.landmarks.eyes, target, atol=0.05)
        assert face.landmarks.points.shape == (68, 2) and np.isfinite(face.landmarks.points).all()
        # The mouth lies below the nose tip, which lies below the eyes.
        points = face.landmarks.points
        assert points[30, 1] > target[0, 1] and points[51, 1] > points[30, 1]
    # A tighter margin frames the same photo closer: the eyes land further apart, the face grows.
    tight = extract_face(files[0].read_bytes(), FaceOptions(size=48, landmarks="dlib68", align=True, margin=0.0))
    np.testing.assert_allclose(tight.landmarks.eyes, lm.aligned_eyes(0.0) * 48 - 0.5, atol=0.05)
    mouth = faces[0].landmarks.points[48:60].mean(axis=0)
    assert tight.landmarks.points[48:60].mean(axis=0)[1] - 23.5 == pytest.approx((mouth[1] - 23.5) * 1.2, abs=0.05)


@needs_dlib
def test_a_centre_crop_kept_without_a_face_gets_no_made_up_landmarks():
    """--center-crop-fallback keeps an image where no face was found; dlib placed its 68 points in the centre
    square anyway (quality 'box') and the image was aligned on those invented eyes."""
    gray = np.full((120, 120), 128, np.uint8)
    gray[40:80] = np.linspace(0, 255, 120, dtype=np.uint8)  # a flat field with a band: no face
    options = FaceOptions(size=48, landmarks="dlib68", align=True, center_crop_fallback=True)
    face = extract_face(cv2.imencode(".png", gray)[1].tobytes(), options)
    assert face.method == "center_crop" and face.landmarks.quality == "missing" and not face.aligned
    assert np.isnan(face.landmarks.points).all()


@needs_dlib
def test_prepare_kdef_records_landmarks_and_alignment(shared_dataset, tmp_path, monkeypatch):
    from emofx.cli import main
    from emofx.data.dataset import FaceDataset

    monkeypatch.setenv("EMOFX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "kdef.npz"
    assert main(["prepare", str(shared_dataset("kdef/frontal")), "--format", "kdef", "--limit", "6",
                 "--out", str(out), "--no-progress"]) == 0
    data = FaceDataset.load(out)
    assert data.meta["aligned"] is True and data.meta["landmarks"]["method"] == "dlib68"
    assert data.extras["landmarks"].shape == (6, 68, 2) and set(data.extras["landmark_method"]) == {"dlib68"}
    assert json.loads(json.dumps(data.meta["landmarks"]))["faces"] == 6
    maps = face_regions(data)
    assert maps.method == "landmarks" and set(maps.image_method) == {"landmarks"}


def test_the_eye_cascade_finds_the_same_eyes_on_one_thread_or_several(shared_dataset):
    """Faces are prepared on several threads; one eye cascade shared by them found other eyes from run to run (on
    17-27 of these 120 KDEF photos)."""
    from emofx.data.faces import FaceOptions, extract_faces

    files = sorted(shared_dataset("kdef/frontal").glob("*.JPG"))[:120]
    options = FaceOptions(landmarks="eyes", align=False)
    alone, threaded = (extract_faces(files, options, workers=workers, use_cache=False) for workers in (1, 2))
    assert np.isfinite(alone.eyes[:, 0, 0]).sum() > 60
    np.testing.assert_array_equal(alone.eyes, threaded.eyes)


def test_a_brow_is_a_band_below_its_five_points():
    """Point 19 (the left brow's top, (15, 13)) with eyes 16.32 px apart: the band reaches 0.12 eye distances down
    from the brow, and the region is grown by 0.08 of them (1.31 px), so nothing above y = 11.69 is brow."""
    masks, _ = regions_from_landmarks(_face_points()[None], 48, 48)
    brows = masks[0, FEATURE_REGIONS.index("brows")]
    assert not brows[:12, 15].any()
    assert brows[12:16, 15].all()  # from the grown top edge down through the band


def test_named_landmarks_are_the_68_points_they_stand_for():
    points = _face_points()[None]
    _, named = regions_from_landmarks(points, 48, 48)
    expected = [points[0, 36:42].mean(axis=0), points[0, 42:48].mean(axis=0), points[0, 30],
                points[0, 48:60].mean(axis=0), points[0, 48], points[0, 54]]
    np.testing.assert_allclose(named[0], expected, atol=1e-5)


def test_points_past_the_border_are_measured_against_the_side_they_cross():
    """A portrait photo, 562 wide and 762 high, allowing 10% of each side beyond the border."""
    assert not lm._inside(np.array([[700.0, 10.0]]), (762, 562))  # 700 > 1.1 * 562 across
    assert lm._inside(np.array([[10.0, 800.0]]), (762, 562))  # 800 < 1.1 * 762 down
    assert not lm._inside(np.array([[10.0, 850.0]]), (762, 562))


def test_the_eye_cascade_keeps_the_left_right_pair_most_alike_in_height_and_size(monkeypatch):
    """Candidates (x, y, w, h) on the crop enlarged to 144 px (3 x): two on the left, one on the right; the pair of
    equal size and height wins over the pair 7.7 px apart in height."""
    class Cascade:
        def detectMultiScale(self, image, **options):  # noqa: N802 - OpenCV's name
            return [(20, 40, 30, 30), (20, 20, 24, 24), (90, 40, 30, 30)]

    monkeypatch.setattr(lm, "thread_cascade", lambda file: Cascade())
    eyes = lm.detect_eyes(np.zeros((48, 48), np.uint8))
    np.testing.assert_allclose(eyes, [[35 / 3 - 0.5, 55 / 3 - 0.5], [105 / 3 - 0.5, 55 / 3 - 0.5]], atol=1e-5)
