"""Face extraction: decoding every image mode, detection, cropping, the disk cache."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from emofx.data import faces
from emofx.data.faces import (
    AS_IS,
    CENTER_CROP,
    DETECTED,
    FaceOptions,
    ImageReadError,
    center_square,
    crop_square,
    decode_gray,
    extract_faces,
    face_from_bytes,
    square_around,
)


pytestmark = pytest.mark.usefixtures("private_cache")  # faces prepared here are cached in the test's folder


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def kdef_photo(shared_dataset) -> bytes:
    return (shared_dataset("kdef/frontal") / "AF01HAS.JPG").read_bytes()


# ---------------------------------------------------------------------------- decoding
def test_16_bit_images_are_rescaled_not_clipped():
    values = np.array([[0, 257 * 128], [65535, 257 * 10]], dtype=np.uint16)
    gray = decode_gray(encode(Image.fromarray(values), "PNG"))
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, [[0, 128], [255, 10]])


def test_32_bit_images_are_stretched_from_their_own_minimum_to_their_maximum():
    values = np.array([[100.0, 150.0], [175.0, 200.0]], np.float32)  # F mode, not 0-based
    gray = decode_gray(encode(Image.fromarray(values, mode="F"), "TIFF"))
    assert gray.tolist() == [[0, 128], [191, 255]]  # (v - 100) / 100 * 255, rounded


def test_palette_rgba_and_cmyk_images_become_gray():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luma 0.299 * 255 = 76
    palette = Image.fromarray(rgb).convert("P")
    assert np.all(decode_gray(encode(palette, "PNG")) == 76)
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black over white
    assert np.all(decode_gray(encode(Image.fromarray(rgba, "RGBA"), "PNG")) == 255)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    gray = decode_gray(encode(cmyk, "JPEG"))
    assert gray.shape == (4, 4) and abs(int(gray.mean()) - 76) <= 3


def test_truncated_and_non_image_bytes_raise_clear_errors():
    jpeg = encode(Image.fromarray(np.full((64, 64), 128, np.uint8)), "JPEG")
    with pytest.raises(ImageReadError, match="truncated"):
        decode_gray(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageReadError, match="not an image"):
        decode_gray(b"emotion,pixels\n0,1 2 3\n")


# ---------------------------------------------------------------------------- cropping
def test_crop_square_pads_past_the_border_and_keeps_the_box_centre():
    gray = np.arange(100, dtype=np.uint8).reshape(10, 10)
    square = square_around((0, 0, 4, 4), margin=0.5)  # centre (2, 2), half side 4 -> rows -2..6
    assert square == (-2, -2, 8)
    crop = crop_square(gray, square)
    assert crop.shape == (8, 8)
    np.testing.assert_array_equal(crop[2:, 2:], gray[:6, :6])
    np.testing.assert_array_equal(crop[0, 2:], gray[0, :6])  # replicated edge
    assert center_square(np.zeros((30, 20))) == (0, 5, 20)


def test_a_box_grows_to_the_square_of_its_longer_side_and_a_crop_pads_the_side_it_crosses():
    assert square_around((10, 20, 40, 20), margin=0.25) == (0, 0, 60)  # centre (30, 30), half side 40 * 0.75
    gray = np.arange(600, dtype=np.int64).reshape(30, 20).astype(np.uint8)  # 30 rows, 20 columns
    crop = crop_square(gray, (10, 0, 15))  # 5 columns past the right border, none past the bottom
    assert crop.shape == (15, 15)
    np.testing.assert_array_equal(crop[:, :10], gray[:15, 10:])
    np.testing.assert_array_equal(crop[:, 10:], np.repeat(gray[:15, 19:], 5, axis=1))  # replicated last column


def test_several_faces_are_listed_largest_first(kdef_photo):
    import cv2

    photo = decode_gray(kdef_photo)
    small = cv2.resize(photo, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full((photo.shape[0], small.shape[1] + photo.shape[1]), 128, np.uint8)
    canvas[:small.shape[0], :small.shape[1]] = small  # the smaller face on the left
    canvas[:, small.shape[1]:] = photo
    boxes = faces.find_faces(canvas, FaceOptions())
    assert len(boxes) == 2
    assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3] and boxes[0][0] >= small.shape[1]
    assert faces.find_face(canvas, FaceOptions()) == boxes[0]


def test_landmarks_are_outside_the_crop_only_where_a_known_point_is():
    unknown = np.full((68, 2), np.nan)
    assert faces._within(unknown, 48)  # the eyes method knows no other point: none of them is outside
    unknown[0] = (-7.0, 10.0)  # within 15% of 48 (7.2 px) past the border
    assert faces._within(unknown, 48)
    unknown[0] = (-8.0, 10.0)
    assert not faces._within(unknown, 48)


def test_a_real_photo_gives_a_detected_face(kdef_photo):
    face, method = face_from_bytes(kdef_photo, FaceOptions(size=48))
    assert method == DETECTED and face.shape == (48, 48) and face.dtype == np.uint8
    big, _ = face_from_bytes(kdef_photo, FaceOptions(size=96))
    assert big.shape == (96, 96)


def test_no_face_is_skipped_unless_the_centre_crop_is_asked_for():
    blank = encode(Image.fromarray(np.full((120, 160), 90, np.uint8)), "PNG")
    face, reason = face_from_bytes(blank, FaceOptions())
    assert face is None and "no face found" in reason
    face, method = face_from_bytes(blank, FaceOptions(center_crop_fallback=True))
    assert method == CENTER_CROP and face.shape == (48, 48)
    face, method = face_from_bytes(blank, FaceOptions(detect=False, size=32))
    assert method == AS_IS and face.shape == (32, 32)


@pytest.mark.parametrize("bad", [dict(size=4), dict(margin=-0.1), dict(scale_factor=1.0), dict(min_face_fraction=0),
                                 dict(detect_max_side=0), dict(min_neighbors=-1)])
def test_face_options_are_validated(bad):
    with pytest.raises(ValueError):
        FaceOptions(**bad)


# ---------------------------------------------------------------------------- many files and the cache
@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)), "PNG")
    (folder / "a.png").write_bytes(good)
    (folder / "b.png").write_bytes(good)  # same bytes as a.png
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    return [folder / n for n in ("a.png", "b.png", "broken.jpg", "empty.png", "missing.png")]


def test_extract_faces_reports_every_unusable_file(files):
    batch = extract_faces(files, FaceOptions(detect=False))
    assert batch.images.shape == (2, 48, 48)
    assert list(batch.kept) == [0, 1]
    assert batch.content_hash[0] == batch.content_hash[1] != 0
    reasons = {os.path.basename(s["path"]): s["reason"] for s in batch.skipped}
    assert set(reasons) == {"broken.jpg", "empty.png", "missing.png"}
    assert "not an image" in reasons["broken.jpg"] or "unreadable" in reasons["broken.jpg"]
    assert "empty file" in reasons["empty.png"]
    assert "cannot read file" in reasons["missing.png"]


def test_the_cache_is_reused_until_a_file_or_option_changes(files, monkeypatch):
    first = extract_faces(files, FaceOptions(detect=False))
    calls = []
    original = faces._face_from_file
    monkeypatch.setattr(faces, "_face_from_file", lambda p, o: calls.append(p) or original(p, o))
    again = extract_faces(files, FaceOptions(detect=False))
    assert calls == []  # served from the cache
    np.testing.assert_array_equal(again.images, first.images)
    assert again.skipped == first.skipped
    extract_faces(files, FaceOptions(detect=False, size=32))
    assert len(calls) == len(files)  # new options: recomputed
    os.utime(files[0], ns=(1, 1))
    extract_faces(files, FaceOptions(detect=False))
    assert len(calls) == 2 * len(files)  # a changed file: recomputed


def test_a_damaged_cache_entry_is_recomputed(files):
    first = extract_faces(files, FaceOptions(detect=False))
    (entry,) = (faces.cache_root() / "faces").glob("*.npz")
    entry.write_bytes(b"garbage")
    again = extract_faces(files, FaceOptions(detect=False))
    np.testing.assert_array_equal(again.images, first.images)


def test_ctrl_c_while_a_cache_entry_is_written_leaves_no_partial_file(private_cache, monkeypatch):
    batch = faces.FaceBatch(images=np.zeros((0, 8, 8), np.uint8), kept=np.zeros(0, int), method=np.zeros(0, str),
                            content_hash=np.zeros(0, np.uint64), skipped=(), landmarks=np.zeros((0, 68, 2)),
                            eyes=np.zeros((0, 2, 2)), landmark_method=np.zeros(0, str),
                            landmark_quality=np.zeros(0, str), aligned=np.zeros(0, bool))
    real_savez = np.savez

    def cut_short(path, **arrays):
        real_savez(path, **arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", cut_short)
    with pytest.raises(KeyboardInterrupt):
        faces._write_cache("entry", batch)
    assert not list(private_cache.rglob("*.npz"))
    monkeypatch.setattr(np, "savez", real_savez)
    faces._write_cache("entry", batch)
    assert [p.name for p in private_cache.rglob("*.npz")] == ["entry.npz"]
