"""The Redis engine: Streams and consumer groups for the queue, hashes for results, Lua steps."""
