"""The memory engine: queue and results in this process, for tests and single-process use."""
