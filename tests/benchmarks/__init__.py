"""Tests of benchmarks/ (its scripts and plans)."""
