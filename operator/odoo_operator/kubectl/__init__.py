"""The `kubectl odoo` plugin: a client of the Kubernetes API, independent of the operator's controllers."""
