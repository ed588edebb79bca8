"""The embedded default: a synthetic micro-expression dataset written in the CASME II layout."""

from components.datasets.synthetic.generator import SyntheticSummary, write_synthetic_casme2

__all__ = ["SyntheticSummary", "write_synthetic_casme2"]
