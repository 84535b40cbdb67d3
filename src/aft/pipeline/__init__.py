"""Workflow plumbing: the config schema, the stage runner, MLflow tracking, cluster resources,
pinned sources and atomic file I/O."""
