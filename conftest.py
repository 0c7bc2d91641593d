"""ftsuite's pytest plugins live in suite/plugin/ (cases.py, shard.py, baselines.py, compare.py); this file
only loads them."""
pytest_plugins = ["suite.plugin.cases", "suite.plugin.shard", "suite.plugin.baselines", "suite.plugin.compare"]
