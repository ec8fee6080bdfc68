"""`kubectl odoo …`: Odoo's database manager on the command line (installed as `kubectl-odoo`), a client of
the Kubernetes API independent of the operator's controllers.

The commands mirror Odoo Online's "My Databases" page, on top of the OdooDatabase, DatabaseBackup and
DomainMapping objects the operator reconciles:

  list       the databases, with tags, URL, size, expiry and last backup (`-A`: every namespace you may read)
  status     one database in plain words: phase, conditions, domains, backups, recent Events
  duplicate  an exact copy (`spec.duplicateFrom`), optionally neutralized for testing; it expires (15 days)
  rename     change the PostgreSQL database name (`spec.databaseName`); the filestore and URL follow
  backup     one backup now (a one-shot DatabaseBackup)
  download   a backup ZIP to your disk (S3: a short-lived presigned URL; PVC: a short-lived reader Pod)
  restore    a new database from a local Odoo ZIP or dump (uploaded first), or from another database's backup
  delete     delete a database after you typed its name (deletionPolicy and subscription protection apply)
  support    a support bundle (tar.gz) pre-filled with the database's details; Secrets are never read
  users      the users of a database: owner, invited / active / archived, and those still pending
  invite     invite a user by e-mail with a role (spec.users); remove-user takes one out (archived in Odoo)
  logout     end every session of one user, or of all users (a Job of the database's image, on request)
  upgrade    the upgrade offered and its deadline, the last test and upgrade; --test on a copy, --now, --rollback

Everything goes through the Kubernetes API with your own credentials (kubeconfig, `--context`, `--as`):
the plugin can do nothing your RBAC does not allow.

Modules: __main__ (entry point, exit codes), parser (options), commands (one `cmd_*` per subcommand),
connection (kubeconfig/context/namespace -> Kube, public API only), users (users, invite, remove-user,
logout), upgrade (upgrade, and the upgrade lines of status), support (formatting, waiting, redaction),
bundle (the support bundle), download and upload (backup files). It uses api/, specs/, config, kube and
backupjob; never the operator's controller, handlers, loop or runtime.
"""
