"""Tests of suite/tools/."""
