"""The matrix: what a case is (spec), which combinations exist (rules), and loading cases/*.yaml (load)."""
