"""Queue backends: where jobs wait until a worker claims them."""
