"""`mer compare`: every type over several seeds on the same folds, CIs, paired Δ vs the
baseline with a verdict, McNemar; the same files on a re-run."""

import json
import shutil
from pathlib import Path

import pytest

from tests.builders import mer, small_project

pytestmark = pytest.mark.slow


def test_compare_reports_cis_deltas_and_verdicts_identically_on_rerun(tmp_path: Path) -> None:
    small_project(
        tmp_path,
        subjects=6,
        compare={"types": ["none", "se", "spatial"], "seeds": 2},
        evaluate={"folds_per_unit": 3},
    )
    done = mer(tmp_path, "compare", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "reports/compare"
    rows = json.loads((out / "attention.json").read_text())["rows"]
    assert [r["attention"] for r in rows] == ["none", "se", "spatial"]
    baseline, *others = rows
    assert baseline["verdict"] == "baseline" and set(baseline["uf1_per_seed"]) == {"3", "4"}
    for row in rows:
        assert row["uf1_ci_low"] <= row["uf1"] <= row["uf1_ci_high"]
    for row in others:
        assert row["verdict"] in {"better", "worse", "no detectable difference"}
        assert row["delta_uf1_ci_low"] <= row["delta_uf1"] <= row["delta_uf1_ci_high"]
        assert row["delta_uf1"] == pytest.approx(row["uf1"] - baseline["uf1"], abs=2e-4)
        assert 0 <= row["mcnemar_p"] <= 1
        expected = (
            "better"
            if row["delta_uf1_ci_low"] > 0
            else "worse"
            if row["delta_uf1_ci_high"] < 0
            else "no detectable difference"
        )
        assert row["verdict"] == expected
    table = (out / "attention.md").read_text()
    assert "ΔUF1 vs none [95% CI]" in table and "| se |" in table and "McNemar p" in table
    assert (out / "attention.png").stat().st_size > 10_000
    assert "ΔUF1 vs none" in done.stdout  # the table is printed too
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".json")}
    shutil.rmtree(tmp_path / "units")  # recompute everything: the same numbers
    assert mer(tmp_path, "compare", "--local").returncode == 0
    again = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".json")}
    assert json.loads(again["attention.json"])["rows"] == [
        {**r, "unit_seconds": json.loads(again["attention.json"])["rows"][k]["unit_seconds"]}
        for k, r in enumerate(json.loads(first["attention.json"])["rows"])
    ]
    assert again["attention.md"] == first["attention.md"]
