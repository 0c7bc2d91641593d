"""Records on disk: the versioned result and manifest files (results), reading runs (runs), and a run's
provenance."""
