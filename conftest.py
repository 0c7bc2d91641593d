"""ftsuite's pytest plugin lives in suite/pytest_plugin.py; this file only loads it."""
pytest_plugins = ["suite.pytest_plugin", "suite.pytest_report"]
