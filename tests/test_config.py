import dataclasses
import re
from pathlib import Path

import pytest

from components.config import AttentionConfig, ConfigError, Params, load_params

ROOT = Path(__file__).parent.parent


def test_project_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.datasets[0].name == "casme2"
    assert params.synthesize.amplitude_px == (1.0, 2.0)


def differences(default: object, given: object, where: str) -> list[str]:
    """The leaves where two configs differ, by dotted path."""
    if dataclasses.is_dataclass(default) and dataclasses.is_dataclass(given):
        return [
            leaf
            for f in dataclasses.fields(default)
            for leaf in differences(getattr(default, f.name), getattr(given, f.name), f"{where}.{f.name}")
        ]  # fmt: skip
    return [] if default == given else [where]


def test_a_key_left_out_of_params_yaml_takes_the_value_params_yaml_documents() -> None:
    """The typed defaults are params.yaml's values, so a params.yaml without a key runs as the
    README and params.yaml's comments describe. The one exception: a model without an
    ``attention`` key has none (params.yaml's default model has the evidence-chosen spatial)."""
    found = differences(Params(), load_params(ROOT / "params.yaml"), "params")
    assert found == ["params.model.attention.type"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_unknown_top_level_key_is_named_with_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'sede'.*valid keys are: .*seed"):
        load_params(write(tmp_path, "sede: 1\n"))


def test_unknown_nested_key_names_its_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synthesize: unknown key 'subject'.*subjects"):
        load_params(write(tmp_path, "synthesize:\n  subject: 3\n"))


def test_unknown_key_in_list_item(tmp_path: Path) -> None:
    text = "datasets:\n  - {name: casme2, root: x, rooot: y}\n"
    with pytest.raises(ConfigError, match=r"datasets\[0\]: unknown key 'rooot'"):
        load_params(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: abc\n", r"seed: expected int"),
        ("seed: true\n", r"seed: expected int"),
        (
            "datasets:\n  - {name: casme9, root: x}\n",
            r"'casme9' is not a known dataset reader; valid: casme2, samm, smic, casme3, flow_images",
        ),
        ("datasets:\n  - {name: casme2}\n", r"missing required key\(s\) root"),
        ("synthesize:\n  amplitude_px: [1]\n", r"expected 2 values"),
        ("synthesize: [1, 2]\n", r"expected a mapping"),
    ],
)
def test_bad_values_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_params(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- seed\n", "expected a mapping of sections, got list"),
        (
            "seed: 1\ntrain:\n  epochs: 3\nseed: 2\n",
            "key 'seed' is given twice (line 1 and line 4)",
        ),
        ("train:\n  epochs: 3\n  epochs: 4\n", "key 'epochs' is given twice (line 2 and line 3)"),
    ],
)
def test_an_empty_file_or_a_key_given_twice_is_an_error(
    tmp_path: Path, text: str, message: str
) -> None:
    """Not all defaults silently, nor the last of two values (YAML keys are unique)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(write(tmp_path, text))


def test_a_mapping_given_with_s_merges_into_its_section(tmp_path: Path) -> None:
    """`-S 'train={epochs: 3}'` sets train.epochs and keeps every other train key the file
    sets; a scalar or a list replaces."""
    path = write(tmp_path, "train:\n  learning_rate: 0.02\n  patience: 4\n")
    params = load_params(path, ["train={epochs: 3, patience: 5}"])
    assert (params.train.epochs, params.train.patience) == (3, 5)
    assert params.train.learning_rate == 0.02
    params = load_params(path, ["compare.space.attention=[se]", "compare.space={heads: [4]}"])
    assert params.compare.space.attention == ("se",) and params.compare.space.heads == (4,)


def test_defaults_fill_unset_keys(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, "seed: 7\n"))
    assert params.seed == 7
    assert params.synthesize == Params().synthesize


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  epochs: 0\n", r"train:epochs: 0 is out of range; it must be ≥ 1"),
        ("train:\n  epochs: -2\n", r"train:epochs: -2 is out of range; it must be ≥ 1"),
        (
            "train:\n  learning_rate: -1\n",
            r"train:learning_rate: -1.0 is out of range; it must be > 0",
        ),
        (
            "train:\n  validation_fraction: 0\n",
            r"validation_fraction: 0.0 is out of range; it must be > 0 and < 1",
        ),
        ("train:\n  batch_size: 0\n", r"train:batch_size: 0 is out of range"),
        (
            "preprocess:\n  num_shards: 0\n",
            r"preprocess:num_shards: 0 is out of range; it must be ≥ 1",
        ),
        ("tune:\n  num_samples: 0\n", r"tune:num_samples: 0 is out of range"),
        ("tune:\n  space:\n    attention: []\n", r"tune:space: attention: the list is empty"),
        ("datasets: []\n", r"datasets: the list is empty"),
        ("evaluate:\n  confidence: 1.5\n", r"evaluate:confidence: 1.5 is out of range"),
        (
            "synthesize:\n  frames_min: 40\n  frames_max: 30\n",
            r"frames_min 40 is above frames_max 30",
        ),
        ("train:\n  learning_rate: .nan\n", r"learning_rate: nan is out of range"),
    ],
)
def test_numbers_are_range_checked(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_params(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model:\n  attention:\n    type: cbam\n    heads: 4\n",
            r"model:attention: 'heads' is not an option of attention type 'cbam'; "
            r"it takes: reduction, kernel_size",
        ),
        (
            "datasets:\n  - {name: flow_images, root: x, missing_apex: middle}\n",
            r"'missing_apex' is not an option of dataset reader 'flow_images'; "
            r"it takes: csv, images_dir, pattern, channels, faces_dir",
        ),
    ],
    ids=["attention-type", "dataset-reader"],
)
def test_an_option_its_type_does_not_take_is_an_error(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_params(write(tmp_path, text))


def test_switching_the_type_keeps_a_null_option_of_the_old_one(tmp_path: Path) -> None:
    """A null option is the module's default for every type: switching params.yaml's
    spatial (``kernel_size: null``) to none or mhsa from the command line needs no edit; a set
    one the new type does not take is still an error."""
    path = write(tmp_path, "model:\n  attention:\n    type: spatial\n    kernel_size: null\n")
    for kind in ("none", "mhsa"):
        params = load_params(path, [f"model.attention.type={kind}"])
        assert params.model.attention == AttentionConfig(kind)
    path = write(tmp_path, "model:\n  attention:\n    type: spatial\n    kernel_size: 5\n")
    with pytest.raises(
        ConfigError, match="'kernel_size' is not an option of attention type 'none'"
    ):
        load_params(path, ["model.attention.type=none"])


def test_an_option_its_type_takes_is_kept(tmp_path: Path) -> None:
    ok = load_params(write(tmp_path, "model:\n  attention:\n    type: mhsa\n    heads: 4\n"))
    assert ok.model.attention.heads == 4


def test_names_come_from_the_registries(tmp_path: Path) -> None:
    from components.attention.registry import ATTENTION
    from components.models.registry import BACKBONES

    with pytest.raises(ConfigError, match="not a known backbone; valid: " + ", ".join(BACKBONES)):
        load_params(write(tmp_path, "model:\n  backbone: vgg\n"))
    with pytest.raises(
        ConfigError, match="not a known attention type; valid: " + ", ".join(ATTENTION)
    ):
        load_params(write(tmp_path, "model:\n  attention:\n    type: gc\n"))


def test_equal_models_differ_only_in_taken_options() -> None:
    from components.config import AttentionConfig, model_from_dict

    assert AttentionConfig("cbam", heads=8) == AttentionConfig("cbam")  # heads is not cbam's
    assert AttentionConfig("mhsa", heads=8) != AttentionConfig("mhsa")
    stored = {"backbone": "ststnet", "attention": {"type": "se", "heads": 2, "reduction": 8}}
    assert model_from_dict(stored, "old artifact").attention.reduction == 8  # older artifacts


def test_every_option_is_declared_once_and_the_config_space_and_labels_follow(
    tmp_path: Path,
) -> None:
    """An attention option is one declaration (``registry.OPTIONS``): the config field, the
    space axis of tune and compare (its values checked against the declared type), the model
    label and the comparison's levels come from it."""
    import dataclasses

    from components.attention.registry import ATTENTION, OPTIONS
    from components.config import ModelSpaceConfig, TuneSpaceConfig, model_label
    from components.evaluation.comparison import levels
    from components.models.space import model_variants

    assert {o for e in ATTENTION.values() for o in e.options} <= OPTIONS.keys()
    config = {f.name: f.default for f in dataclasses.fields(AttentionConfig)}
    assert config == {"type": "none", **{name: o.default for name, o in OPTIONS.items()}}
    for space in (ModelSpaceConfig, TuneSpaceConfig):
        axes = {f.name: f.default for f in dataclasses.fields(space)}
        assert all(axes[name] == (o.default,) for name, o in OPTIONS.items())
    with pytest.raises(ConfigError, match=r"tune.space.max_keys.*out of range"):
        load_params(write(tmp_path, "tune:\n  space:\n    max_keys: [0]\n"))
    space = ModelSpaceConfig(attention=("mhsa",), heads=(1, 2), max_keys=(None, 9))
    models = model_variants(space, 0.5)
    assert len(models) == 4 and {m.attention.max_keys for m in models} == {None, 9}
    labels = {model_label(m.as_dict()) for m in models}
    assert "ststnet/mhsa@fused h=1 keys≤9" in labels and "ststnet/mhsa@fused h=2" in labels
    assert {levels(m)["max_keys"] for m in models} == {"default", "9"}


def test_self_attention_positions_are_learned_or_none(tmp_path: Path) -> None:
    from components.config import model_label

    text = "model:\n  attention:\n    type: mhsa\n    positions: {}\n"
    params = load_params(write(tmp_path, text.format("none")))
    assert model_label(params.model.as_dict()) == "ststnet/mhsa@fused h=2 pos=none"
    with pytest.raises(ConfigError, match=r"model.attention.positions.*'sideways'.*learned"):
        load_params(write(tmp_path, text.format("sideways")))


def test_the_config_module_does_not_import_keras() -> None:
    """Stages that never train (synthesize, preprocess, inspect) must not pay for Keras."""
    import subprocess
    import sys

    code = "import sys; from components.config import load_params; load_params('params.yaml'); print('keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
