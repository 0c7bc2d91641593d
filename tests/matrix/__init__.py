"""Tests of suite/matrix/."""
