"""Tests of suite/plugin/."""
