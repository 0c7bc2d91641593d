"""Tests of suite/run/."""
