"""Tests of suite/records/."""
