"""Evaluation: metrics, hold-out protocol, method runs and result tables."""
