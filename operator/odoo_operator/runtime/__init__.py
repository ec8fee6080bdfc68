"""The operator process's state and services: registry (in-memory state), leader election, metrics."""
