"""Tests of suite/report/."""
