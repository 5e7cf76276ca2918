"""Baselines that `labeltune bench` compares label supervision against."""
