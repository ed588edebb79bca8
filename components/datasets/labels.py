"""Label mappings: each dataset's native emotion classes and the MEGC 2019 composite task.

MEGC 2019 composite (3 classes): negative = repression, anger, contempt, disgust, fear,
sadness; positive = happiness; surprise = surprise. For CASME II only disgust and repression
count as negative (its fear and sadness rows are excluded, as in the challenge's list).
Everything else (``others``, ``tense``, ...) is outside the composite task.
"""

from __future__ import annotations

COMPOSITE_CLASSES: tuple[str, ...] = ("negative", "positive", "surprise")
NUM_CLASSES = len(COMPOSITE_CLASSES)

#: Spelling variants in the real sheets -> canonical emotion names.
ALIASES: dict[str, str] = {
    "happy": "happiness",
    "sad": "sadness",
    "other": "others",
    "repressed": "repression",
    "surprised": "surprise",
    "disgusted": "disgust",
    "angry": "anger",
}

#: Every emotion a dataset's sheet (or folder layout) may contain.
KNOWN_EMOTIONS: dict[str, frozenset[str]] = {
    "casme2": frozenset(
        {"happiness", "surprise", "disgust", "repression", "others", "fear", "sadness"}
    ),
    "samm": frozenset(
        {"anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "others"}
    ),
    "smic": frozenset({"negative", "positive", "surprise"}),
    "casme3": frozenset({"anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"}),
}

#: Each dataset's conventional native classification task (the order fixes the label ids).
NATIVE_CLASSES: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "surprise", "disgust", "repression", "others"),
    "samm": ("anger", "contempt", "happiness", "surprise", "others"),
    "smic": ("negative", "positive", "surprise"),
    "casme3": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"),
}

_NEGATIVE = frozenset({"repression", "anger", "contempt", "disgust", "fear", "sadness"})
_COMPOSITE_NEGATIVE_OVERRIDE: dict[str, frozenset[str]] = {
    "casme2": frozenset({"disgust", "repression"}),
    "smic": frozenset({"negative"}),
}


def canonical_emotion(dataset: str, emotion: str) -> str:
    """Normalise a sheet's emotion spelling; raise ``ValueError`` if the dataset has no such class."""
    name = " ".join(str(emotion).strip().lower().split())
    name = ALIASES.get(name, name)
    known = KNOWN_EMOTIONS[dataset]
    if name not in known:
        raise ValueError(
            f"unknown emotion {emotion!r} for {dataset}; expected one of {', '.join(sorted(known))}"
        )
    return name


def composite_label(dataset: str, emotion: str) -> int | None:
    """MEGC 2019 composite class id (0 negative, 1 positive, 2 surprise), or None if excluded."""
    negative = _COMPOSITE_NEGATIVE_OVERRIDE.get(dataset, _NEGATIVE)
    if emotion in negative:
        return 0
    if emotion in ("happiness", "positive"):
        return 1
    if emotion == "surprise":
        return 2
    return None


def native_label(dataset: str, emotion: str) -> int | None:
    """Class id in the dataset's native task, or None if that task excludes the emotion."""
    classes = NATIVE_CLASSES[dataset]
    return classes.index(emotion) if emotion in classes else None
