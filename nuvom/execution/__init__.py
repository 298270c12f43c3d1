"""How a claimed job is run: option resolution, retry and timeout policies, the runner."""
