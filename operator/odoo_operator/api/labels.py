"""The labels and annotations the operator puts on what it creates, and reads back to find it."""

MANAGED_BY = "odoo-db-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
DATABASE_LABEL = "odoo.dbmanager.io/database"  # every child of an OdooDatabase: the database's name
BACKUP_LABEL = "odoo.dbmanager.io/backup"  # a backup Job: the DatabaseBackup it runs
OWNER_UID_LABEL = "odoo.dbmanager.io/owner-uid"  # a final backup Job: the uid of the OdooDatabase it is for
MAPPING_LABEL = "odoo.dbmanager.io/domain-mapping"  # a DomainMapping's route: <namespace>.<name>
TAG_LABEL_PREFIX = "tag.odoo.dbmanager.io/"  # spec.tags, copied onto the database's children
PLAN_LABEL = "odoo.dbmanager.io/plan"  # on a namespace: the OdooPlan whose limits its databases are under
TEMPLATE_LABEL = "odoo.dbmanager.io/template"  # a template database's Job and Secret: its key
TEST_COPY_LABEL = "odoo.dbmanager.io/upgrade-test-of"  # an upgrade's test copy: the database it tests for

# Annotations. On the pod templates of Odoo's pods:
ODOO_CONF_ANNOTATION = "odoo.dbmanager.io/odoo.conf"  # odoo.conf, projected at /etc/odoo by the downward API
CREDENTIALS_ANNOTATION = "odoo.dbmanager.io/credentials"  # the app's: a fingerprint of its role's password
# On an OdooDatabase, written by `kubectl odoo` (a request with its time; the operator answers in status):
LOGOUT_ANNOTATION = "odoo.dbmanager.io/logout"  # <time> <login or *>: end these sessions
ROLLBACK_ANNOTATION = "odoo.dbmanager.io/rollback"  # <time>: back to the pre-upgrade copy
RETEST_ANNOTATION = "odoo.dbmanager.io/upgrade-test"  # <time> after the last test ended: test again

# kopf's finalizer on the kinds it runs a daemon or delete handler for (loop.startup sets it); the daily
# DatabaseBackup is created with it, which spares kopf one PATCH per database to add it
FINALIZER = "odoo.dbmanager.io/finalizer"
