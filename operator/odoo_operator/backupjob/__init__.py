"""The backup and restore Jobs' program (`python -m odoo_operator.backupjob`), run in the operator's image.

Independent of the operator: it imports only the API models and the clients (kube, for report.py), never
controller/, handlers, loop or runtime/. The kubectl plugin uses it (storage, restore.receive).
One module per concern, lower ones first:

    artifacts   what an artifact is (id, name, sidecar), BackupError, check_path
    s3          the S3 client: SigV4 signing, requests, multipart uploads
    storage     Store (file:// and s3://): artifacts written, published, listed, read, cleaned up
    pgtools     pg_dump, psql and pg_restore, and the Job's few queries
    archive     Odoo's ZIP and pg_dump formats, manifest.json, zip-bomb caps
    create      create_backup, prune (retention)
    restore     restore_backup, restore_storage_file, restore_file, receive
    report      the result written into the DatabaseBackup's status
    __main__    the command line
"""
