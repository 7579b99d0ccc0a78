"""emofx: learning facial emotion representations across cultures.

Implements and extends Yousefi, Thorstad & Agichtein, "Learning Facial Emotion
Representations across Cultures": the paper's CNN trained per culture, guided
backpropagation saliency, emotion modification, and calibrated statistics for
comparing cultures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emofx.data.emotions import EMOTIONS, canonical_emotion

if TYPE_CHECKING:
    from emofx.data.dataset import FaceDataset

__version__ = "0.1.0"

__all__ = ["EMOTIONS", "canonical_emotion", "FaceDataset", "__version__"]


def __getattr__(name: str) -> Any:
    """``FaceDataset`` on first use: it imports pandas, which the ``emofx`` command's start (it may
    start itself again, :mod:`emofx.nets.allocator`) and ``emofx --help`` do without."""
    if name == "FaceDataset":
        from emofx.data.dataset import FaceDataset

        return FaceDataset
    raise AttributeError(f"module 'emofx' has no attribute {name!r}")
