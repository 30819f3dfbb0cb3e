"""Tests of engine/ (its top-level modules here; each package's in the folder of the same name)."""
