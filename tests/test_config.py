from pathlib import Path

import pytest

from components.config import ConfigError, Params, load_params

ROOT = Path(__file__).parent.parent


def test_project_params_load() -> None:
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.datasets[0].name == "casme2"
    assert params.synthesize.amplitude_px == (1.0, 2.0)


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
        ("datasets:\n  - {name: casme9, root: x}\n", r"'casme9' is not one of"),
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


def test_defaults_fill_unset_keys(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, "seed: 7\n"))
    assert params.seed == 7
    assert params.synthesize == Params().synthesize
