"""A comparison's tables (Markdown, CSV, LaTeX) and figures: the forest plot of ΔUF1 with its
paired intervals (the figure that decides), and a type × placement heatmap of ΔUF1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

COLOURS = {
    "better": "#1b7837",
    "worse": "#b2182b",
    "equivalent": "#2166ac",
    "inconclusive": "#8c8c8c",
}


def colour_of(verdict: str) -> str:
    """A verdict's colour (by its kind)."""
    from components.artifacts import verdict_kind

    return COLOURS[verdict_kind(verdict)]


def resolution_note(margin: float) -> str:
    """How to read the verdicts and the MDE (under the tables)."""
    return (
        f"Verdicts: better / worse when the 95% interval of ΔUF1 excludes 0; equivalent within "
        f"±{margin:g} when its 90% interval lies inside ±{margin:g} (two one-sided tests, "
        f"`compare.margin`); else inconclusive: the data cannot tell a difference of "
        f"{margin:g} from none. MDE: the true |ΔUF1| this comparison calls with 80% power; "
        "differences well below it go unseen, whatever the verdict."
    )


#: marks an interval cut to the metric's range (:data:`CLIPPED_NOTE`)
CLIPPED = "†"
CLIPPED_NOTE = (
    f"{CLIPPED} the interval reached past ±1 and is cut to it: too little data for an interval "
    "(usually too few seeds to estimate the training noise); add seeds (`compare.seeds`)"
)


def _ci(row: dict, name: str, signed: bool = False) -> str:
    fmt = "+.3f" if signed else ".3f"
    mark = CLIPPED if row.get(name + "_ci_clipped") else ""
    return (
        f"{row[name]:{fmt}} [{row[name + '_ci_low']:{fmt}}, {row[name + '_ci_high']:{fmt}}]{mark}"
    )


def table(rows: list[dict], correction: str) -> pd.DataFrame:
    """One line per model: what it is, UF1/UAR with CIs, each dataset's UF1, ΔUF1 with its CI,
    p-values and verdicts (unadjusted and adjusted)."""
    datasets = sorted({d for r in rows for d in r["uf1_per_dataset"]})
    lines = []
    for r in rows:
        line = {
            "model": r["model"],
            "UF1 [95% CI]": _ci(r, "uf1"),
            "UAR [95% CI]": _ci(r, "uar"),
            **{f"UF1 {d}": f"{r['uf1_per_dataset'].get(d, float('nan')):.3f}" for d in datasets},
            "UF1 per seed": " ".join(f"{v:.3f}" for v in r["uf1_per_seed"].values()),
        }
        if r["verdict"] == "baseline":
            line.update({"ΔUF1 [95% CI]": "baseline", "MDE (80%)": "", "p": "",
                         f"p ({correction})": "", "verdict": "baseline",
                         f"verdict ({correction})": "baseline"})  # fmt: skip
        else:
            line.update(
                {
                    "ΔUF1 [95% CI]": _ci(r, "delta_uf1", signed=True),
                    "MDE (80%)": f"{r['mde_uf1']:.3f}",
                    "p": f"{r['p']:.3f}",
                    f"p ({correction})": f"{r['p_adjusted']:.3f}",
                    "verdict": r["verdict"],
                    f"verdict ({correction})": r["verdict_adjusted"],
                }
            )
        lines.append(line)
    return pd.DataFrame(lines)


def effects_table(effects: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "axis": e["axis"],
                "level": e["level"],
                "variants": e["variants"],
                "mean ΔUF1 [95% CI]": _ci(e, "delta_uf1", signed=True),
                "MDE (80%)": f"{e['mde_uf1']:.3f}",
                "verdict": e["verdict"],
            }
            for e in effects
        ]
    )


def markdown(
    rows: list[dict], effects: list[dict], header: str, correction: str, margin: float
) -> str:
    parts = [header, "", _github(table(rows, correction)), "", resolution_note(margin)]
    if effects:
        parts += [
            "",
            "Main effects: the mean ΔUF1 of the variants at each level of an axis (paired CIs).",
            "",
            _github(effects_table(effects)),
        ]
    if any(r.get("delta_uf1_ci_clipped") for r in [*rows, *effects]):
        parts += ["", CLIPPED_NOTE]
    return "\n".join(parts) + "\n"


def _github(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of the frame's text as it is (no number reformatting)."""
    return tabulate(
        frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True
    )


def latex(rows: list[dict], correction: str) -> str:
    frame = table(rows, correction)
    return frame.to_latex(index=False, escape=True, column_format="l" + "r" * (frame.shape[1] - 1))


def forest_png(rows: list[dict], path: Path, title: str, correction: str, margin: float) -> None:
    """ΔUF1 of every variant with its paired 95% CI, sorted, over the band of ±``margin``;
    colour by the adjusted verdict, a hollow marker where only the unadjusted one is a call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = sorted((r for r in rows if r["verdict"] != "baseline"), key=lambda r: r["delta_uf1"])
    height = max(3.0, 0.32 * len(compared) + 2.2)
    fig, ax = plt.subplots(figsize=(7.5, height), dpi=120)
    for y, r in enumerate(compared):
        colour = colour_of(r["verdict_adjusted"])
        ax.plot([r["delta_uf1_ci_low"], r["delta_uf1_ci_high"]], [y, y], color=colour, lw=2)
        hollow = r["verdict"] != r["verdict_adjusted"]
        ax.plot(r["delta_uf1"], y, "o", color=colour, mfc="white" if hollow else colour, ms=6)
    ax.axvspan(-margin, margin, color=COLOURS["equivalent"], alpha=0.08, lw=0)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(compared)), [r["model"] for r in compared], fontsize=7)
    baselines = sorted({r["baseline"] for r in compared})
    ax.set_xlabel(f"ΔUF1 vs {', '.join(baselines)} (paired 95% CI)")
    ax.set_title(title, fontsize=9)
    names = {"equivalent": f"equivalent within ±{margin:g}"}
    handles = [
        plt.Line2D([], [], color=c, marker="o", lw=2, label=f"{names.get(k, k)} ({correction})")
        for k, c in COLOURS.items()
    ]
    handles.append(plt.Line2D([], [], color="grey", marker="o", mfc="white", lw=0,
                              label="unadjusted call only"))  # fmt: skip
    # below the axes in a band of its own (anchored to the axes, it ran into the axis label
    # when the sweep had few models)
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.6 / height, 1, 1))
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def heatmap_png(rows: list[dict], path: Path, title: str) -> None:
    """Mean ΔUF1 by attention type × placement (a diverging, perceptually uniform map centred
    on 0, with its colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    compared = pd.DataFrame([r for r in rows if r["verdict"] != "baseline"])
    grid = compared.pivot_table(index="attention", columns="placement", values="delta_uf1")
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * grid.shape[1], 1.2 + 0.45 * grid.shape[0]), dpi=120)
    limit = max(float(abs(compared.delta_uf1).max()), 1e-3)
    image = ax.imshow(grid.to_numpy(), cmap="RdBu", norm=TwoSlopeNorm(0, -limit, limit))
    ax.set_xticks(range(grid.shape[1]), grid.columns, fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid.iat[i, j]
            if pd.notna(value):
                ax.text(j, i, f"{value:+.3f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="ΔUF1")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
