"""Preprocessing: per-sample feature extraction and the Beam transforms around it."""
