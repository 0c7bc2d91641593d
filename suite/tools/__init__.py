"""Commands around the suite: derived environments (envs), upgrade check, bisect and canary (upgrade), the
control lock (lock), wheels for a machine without an index (wheels)."""
