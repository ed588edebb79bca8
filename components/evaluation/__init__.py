"""MEGC evaluation: subject-level splits, UF1/UAR metrics, plots."""
