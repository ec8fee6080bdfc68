from odoo_operator.backupjob.program import main

if __name__ == "__main__":
    main()
