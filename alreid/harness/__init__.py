"""Experiment harness: trial loop, Ray Tune runner, MLflow logging, tables, statistics, plots."""
