"""Progress bars for long work, drawn the way the place they end up can show them.

``tqdm.auto`` draws a widget in any Jupyter kernel, and a notebook saved after papermill ran it keeps only the
widget's first frame: every bar of a batch run's executed notebook would read 0%. ``$EMOFX_PROGRESS`` chooses:

- ``auto`` (default): ``tqdm.auto``, a widget in JupyterLab, text in a terminal;
- ``text``: plain text bars, redrawn at most every few seconds and kept when done, so that a saved notebook shows
  each bar's last state (``emofx batch`` sets this for the kernels it starts, unless the variable is set);
- ``off``: no bars.

Every emofx module draws its bars through :func:`tqdm` here (the base layer, so that every layer may).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

PROGRESS_ENV = "EMOFX_PROGRESS"
PROGRESS_MODES = ("auto", "text", "off")
TEXT_REDRAW_SECONDS = 5.0


def progress_mode() -> str:
    """The mode ``$EMOFX_PROGRESS`` asks for; an unknown value warns and counts as ``auto`` (a progress bar is
    never a reason to stop a run)."""
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower() or "auto"
    if mode not in PROGRESS_MODES:
        warnings.warn(f"${PROGRESS_ENV}={mode!r} is not one of {', '.join(PROGRESS_MODES)}: progress bars as 'auto'",
                      stacklevel=3)
        return "auto"
    return mode


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A ``tqdm`` progress bar (same arguments) in the mode of :func:`progress_mode`."""
    mode = progress_mode()
    if mode == "off":
        kwargs["disable"] = True
    if mode == "text":
        from tqdm.std import tqdm as text_bar

        kwargs.setdefault("mininterval", TEXT_REDRAW_SECONDS)
        kwargs["leave"] = True  # a saved notebook keeps the last frame instead of an erased line
        kwargs["position"] = 0  # nested bars one after another, without cursor movements a saved notebook keeps
        return text_bar(*args, **kwargs)
    from tqdm.auto import tqdm as auto_bar

    return auto_bar(*args, **kwargs)


@contextmanager
def text_progress_for_saved_notebooks() -> Iterator[None]:
    """Within: ``$EMOFX_PROGRESS`` is ``text`` unless the user set it, for the kernels started inside (papermill's,
    whose notebooks are saved); afterwards as before, so the calling process keeps its own bars."""
    if os.environ.get(PROGRESS_ENV, "").strip():
        yield
        return
    os.environ[PROGRESS_ENV] = "text"
    try:
        yield
    finally:
        os.environ.pop(PROGRESS_ENV, None)
