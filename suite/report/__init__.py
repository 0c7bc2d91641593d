"""Comparing runs (compare, sidebyside) and rendering the comparison: Markdown, HTML with plots, files."""
