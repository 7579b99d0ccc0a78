"""emofx: learning facial emotion representations across cultures.

Implements and extends Yousefi, Thorstad & Agichtein, "Learning Facial Emotion
Representations across Cultures": the paper's CNN trained per culture, guided
backpropagation saliency, emotion modification, and calibrated statistics for
comparing cultures.
"""

__version__ = "0.1.0"

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import EMOTIONS, canonical_emotion

__all__ = ["EMOTIONS", "canonical_emotion", "FaceDataset", "__version__"]
