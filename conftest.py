"""ftsuite's pytest plugins live in suite/ (pytest_plugin.py, pytest_shard.py, pytest_baselines.py,
pytest_report.py); this file only loads them."""
pytest_plugins = ["suite.pytest_plugin", "suite.pytest_shard", "suite.pytest_baselines", "suite.pytest_report"]
