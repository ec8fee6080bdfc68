#!/bin/bash
# The entrypoint of the official `odoo` image (github.com/odoo/docker, 16.0; 17.0 and 18.0 alike),
# re-written here with the same behaviour, for the local node runner (operator/odoo_operator/devtools/noderunner.py):
#  - PASSWORD may come from the file named by PASSWORD_FILE;
#  - HOST, PORT, USER, PASSWORD default to the legacy docker-link variables, then to the
#    POSTGRES_* ones, then to db, 5432, odoo, odoo;
#  - each becomes `--db_<key> <value>`, except that a `db_<key> = value` line of $ODOO_RC wins
#    (its third space-separated field, quotes and CR/LF removed);
#  - only when the first argument is `odoo`, `--` or an option: wait for PostgreSQL
#    (wait-for-psql.py, 30 s, database `postgres`), then exec odoo with the arguments followed by the --db_* ones
#    (`odoo scaffold …` skips both); any other command is exec'd unchanged.

set -e

if [ -v PASSWORD_FILE ]; then
    PASSWORD="$(< $PASSWORD_FILE)"
fi

: ${HOST:=${DB_PORT_5432_TCP_ADDR:='db'}}
: ${PORT:=${DB_PORT_5432_TCP_PORT:=5432}}
: ${USER:=${DB_ENV_POSTGRES_USER:=${POSTGRES_USER:='odoo'}}}
: ${PASSWORD:=${DB_ENV_POSTGRES_PASSWORD:=${POSTGRES_PASSWORD:='odoo'}}}

DB_ARGS=()
add_db_arg() {
    local key="$1" value="$2"
    local pattern="^\s*\b${key}\b\s*="
    if grep -q -E "$pattern" "$ODOO_RC"; then
        value=$(grep -E "$pattern" "$ODOO_RC" | cut -d " " -f3 | sed 's/["\n\r]//g')
    fi
    DB_ARGS+=("--${key}" "${value}")
}
add_db_arg db_host "$HOST"
add_db_arg db_port "$PORT"
add_db_arg db_user "$USER"
add_db_arg db_password "$PASSWORD"

case "$1" in
    -- | odoo)
        shift
        if [[ "$1" == "scaffold" ]]; then
            exec odoo "$@"
        fi
        wait-for-psql.py ${DB_ARGS[@]} --timeout=30
        exec odoo "$@" "${DB_ARGS[@]}"
        ;;
    -*)
        wait-for-psql.py ${DB_ARGS[@]} --timeout=30
        exec odoo "$@" "${DB_ARGS[@]}"
        ;;
    *)
        exec "$@"
        ;;
esac

exit 1
