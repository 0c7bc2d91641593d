"""Judging what a case measured: checks, checkpoint inventories, metrics with units and directions, hardware
profiles, budgets, golden curves (baselines), and budgets derived from measurements (calibrate)."""
