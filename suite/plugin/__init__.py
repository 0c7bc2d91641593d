"""The pytest wiring, thin: options, markers and parametrization (cases), shards, golden curves, --compare-to,
and the pytest-benchmark bridge. The work is in the other stages."""
