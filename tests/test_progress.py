"""Progress bars: the mode $EMOFX_PROGRESS picks, and emofx batch's kernels drawing text bars."""

from __future__ import annotations

import io

import pytest
from tqdm.std import tqdm as TextBar

from emofx.data.progress import PROGRESS_ENV, progress_mode, text_progress_for_saved_notebooks, tqdm


def test_text_bars_keep_their_last_frame(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "text")
    stream = io.StringIO()
    bar = tqdm(range(7), desc="train", leave=False, file=stream)  # leave=False is overruled: the frame stays
    assert type(bar) is TextBar and bar.mininterval == 5.0
    list(bar)
    last_frame = stream.getvalue().split("\r")[-1]
    assert last_frame.startswith("train: 100%") and "| 7/7 [" in last_frame and last_frame.endswith("\n")


def test_off_disables_and_unknown_values_warn_and_count_as_auto(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "off")
    assert tqdm(range(3), file=io.StringIO()).disable
    monkeypatch.setenv(PROGRESS_ENV, "bars please")
    with pytest.warns(UserWarning, match="EMOFX_PROGRESS='bars please' is not one of auto, text, off"):
        assert progress_mode() == "auto"
    monkeypatch.delenv(PROGRESS_ENV)
    assert progress_mode() == "auto"


def test_batch_kernels_get_text_bars_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    with text_progress_for_saved_notebooks():
        assert progress_mode() == "text"
    assert progress_mode() == "auto"  # the calling process keeps its own bars
    monkeypatch.setenv(PROGRESS_ENV, "off")
    with text_progress_for_saved_notebooks():
        assert progress_mode() == "off"
    assert progress_mode() == "off"


def test_nested_text_bars_follow_one_another_without_cursor_movements(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "text")
    stream = io.StringIO()
    outer = tqdm(total=2, desc="compare", file=stream)
    for name in ("a", "b"):
        list(tqdm(range(3), desc=f"saliency {name}", leave=False, file=stream))
        outer.update(1)
    outer.close()
    frames = [line.split("\r")[-1] for line in stream.getvalue().split("\n")[:-1]]  # what a notebook shows
    assert "\x1b[" not in stream.getvalue()
    assert [frame.split(":")[0] for frame in frames] == ["saliency a", "saliency b", "compare"]
    assert all("100%" in frame for frame in frames)
