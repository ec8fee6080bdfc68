"""The labels and annotations the operator puts on what it creates, and reads back to find it."""

MANAGED_BY = "odoo-db-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
DATABASE_LABEL = "odoo.dbmanager.io/database"  # every child of an OdooDatabase: the database's name
BACKUP_LABEL = "odoo.dbmanager.io/backup"  # a backup Job: the DatabaseBackup it runs
OWNER_UID_LABEL = "odoo.dbmanager.io/owner-uid"  # a final backup Job: the uid of the OdooDatabase it is for
MAPPING_LABEL = "odoo.dbmanager.io/domain-mapping"  # a DomainMapping's route: <namespace>.<name>
TAG_LABEL_PREFIX = "tag.odoo.dbmanager.io/"  # spec.tags, copied onto the database's children
PLAN_LABEL = "odoo.dbmanager.io/plan"  # on a namespace: the OdooPlan whose limits its databases are under
# kopf's finalizer on the kinds it runs a daemon or delete handler for (loop.startup sets it); the daily
# DatabaseBackup is created with it, which spares kopf one PATCH per database to add it
FINALIZER = "odoo.dbmanager.io/finalizer"
