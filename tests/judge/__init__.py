"""Tests of suite/judge/."""
