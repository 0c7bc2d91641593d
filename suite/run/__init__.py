"""Running cases: the session that writes a run, one child process per case (runner, distributed), and the
skip policy (requirements)."""
