"""Modeling: pipeline building, metrics, training window, train, evaluate, plots."""
