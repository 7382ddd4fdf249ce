"""Backbones, heads and the hybrid-memory loss."""
