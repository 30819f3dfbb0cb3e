"""Tests of engine/io/ (files and devices)."""
