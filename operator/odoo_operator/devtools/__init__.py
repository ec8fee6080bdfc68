"""The local development harness (`make dev`, the tests): control plane, PostgreSQL, node runner, ingress.

Not part of the operator's image."""
