"""The canonical emotion vocabulary and the aliases that datasets use for it."""

from __future__ import annotations

from typing import Iterable, Sequence

EMOTIONS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "afraid",
    "happy",
    "sad",
    "surprised",
    "neutral",
    "contempt",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "angry": ("anger", "an", "mad", "ang"),
    "disgusted": ("disgust", "di", "dis"),
    "afraid": ("fear", "fearful", "af", "fe", "scared"),
    "happy": ("happiness", "ha", "joy", "hap"),
    "sad": ("sadness", "sa"),
    "surprised": ("surprise", "su", "sur"),
    "neutral": ("calm", "ne", "neu"),
    "contempt": ("co", "contemptuous"),
}

ALIASES: dict[str, str] = {e: e for e in EMOTIONS}
ALIASES.update({alias: e for e, names in _ALIASES.items() for alias in names})


class UnknownEmotionError(ValueError):
    """Raised for label names that are not in the canonical vocabulary."""


def canonical_emotion(name: str) -> str:
    """Map a label name or alias (any case) to its canonical emotion."""
    key = str(name).strip().lower()
    if key not in ALIASES:
        raise UnknownEmotionError(
            f"unknown emotion name {name!r}; accepted names: {', '.join(sorted(ALIASES))}"
        )
    return ALIASES[key]


def canonicalize_all(names: Iterable[str]) -> list[str]:
    """Canonicalise many names, reporting every unknown one in a single error."""
    names = list(names)
    unknown = sorted({str(n) for n in names if str(n).strip().lower() not in ALIASES})
    if unknown:
        raise UnknownEmotionError(
            f"unknown emotion names {unknown}; accepted names: {', '.join(sorted(ALIASES))}"
        )
    return [ALIASES[str(n).strip().lower()] for n in names]


def ordered_classes(names: Iterable[str]) -> tuple[str, ...]:
    """The canonical emotions present in ``names``, in the vocabulary's stable order."""
    present = set(canonicalize_all(names))
    return tuple(e for e in EMOTIONS if e in present)


def shared_classes(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    """Classes present in both class lists, in canonical order."""
    return tuple(e for e in EMOTIONS if e in set(a) and e in set(b))


def emotion_order(name: str, last: str | None = None) -> tuple[bool, int, str]:
    """Sort key of the vocabulary's order (:data:`EMOTIONS`, that of every confusion matrix), so that tables and
    figures list emotions alike: names outside it after every emotion, alphabetically, and ``last`` (a pooled row
    such as the comparisons' ``all``) at the end."""
    return name == last, EMOTIONS.index(name) if name in EMOTIONS else len(EMOTIONS), name
