import pytest

from components.datasets.labels import (
    COMPOSITE_CLASSES,
    KNOWN_EMOTIONS,
    NATIVE_CLASSES,
    canonical_emotion,
    composite_label,
    native_label,
)

NEG, POS, SUR = 0, 1, 2

# The MEGC 2019 composite table, class by class, for every dataset.
EXPECTED_COMPOSITE = {
    "casme2": {
        "disgust": NEG,
        "repression": NEG,
        "happiness": POS,
        "surprise": SUR,
        "fear": None,
        "sadness": None,
        "others": None,
    },
    "samm": {
        "anger": NEG,
        "contempt": NEG,
        "disgust": NEG,
        "fear": NEG,
        "sadness": NEG,
        "happiness": POS,
        "surprise": SUR,
        "others": None,
    },
    "smic": {"negative": NEG, "positive": POS, "surprise": SUR},
    "casme3": {
        "anger": NEG,
        "disgust": NEG,
        "fear": NEG,
        "sadness": NEG,
        "happiness": POS,
        "surprise": SUR,
        "others": None,
    },
}


@pytest.mark.parametrize(
    ("dataset", "emotion", "label"),
    [(d, e, lab) for d, table in EXPECTED_COMPOSITE.items() for e, lab in table.items()],
)
def test_composite_mapping(dataset: str, emotion: str, label: int | None) -> None:
    assert composite_label(dataset, emotion) == label


def test_table_covers_every_known_emotion() -> None:
    for dataset, known in KNOWN_EMOTIONS.items():
        assert set(EXPECTED_COMPOSITE[dataset]) == set(known)


def test_composite_class_names() -> None:
    assert COMPOSITE_CLASSES == ("negative", "positive", "surprise")


def test_casme2_native_five_classes() -> None:
    assert NATIVE_CLASSES["casme2"] == ("happiness", "surprise", "disgust", "repression", "others")
    assert native_label("casme2", "repression") == 3
    assert native_label("casme2", "fear") is None  # not in the 5-class task


@pytest.mark.parametrize(
    ("dataset", "raw", "canonical"),
    [
        ("casme3", "happy", "happiness"),
        ("casme3", " Sad ", "sadness"),
        ("samm", "Other", "others"),
        ("samm", "Happiness", "happiness"),
        ("casme2", "repression", "repression"),
    ],
)
def test_spelling_variants(dataset: str, raw: str, canonical: str) -> None:
    assert canonical_emotion(dataset, raw) == canonical


def test_unknown_emotion_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown emotion 'joy' for casme2; expected one of"):
        canonical_emotion("casme2", "joy")
    with pytest.raises(ValueError, match="unknown emotion"):
        canonical_emotion("casme2", "anger")  # not a CASME II class
