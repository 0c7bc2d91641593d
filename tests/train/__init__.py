"""Tests of suite/train/."""
