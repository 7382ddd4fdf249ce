"""Trainer plugins: what updates the embedding between active-learning cycles (head, SpCL, ...)."""

from alreid.trainers.base import CycleInput, Trainer

__all__ = ["CycleInput", "Trainer"]
