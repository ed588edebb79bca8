"""Hyper-parameter search (Ray Tune) and the configuration it hands to later stages."""
