"""The backup and restore Jobs' program (`python -m odoo_operator.backupjob`), run in the operator's image.

Independent of the operator: it imports only the API models and the storage clients."""
