"""Tests of engine/diffusion/ (the pixel renderer)."""
