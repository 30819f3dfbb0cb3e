"""Tests of engine/portrait/ (the portrait renderer)."""
