#!/usr/bin/env bash
# Prepares a real Odoo for the local cluster and the tests, once, cached:
#   .cache/odoo/<series>-<source id>/src   the Odoo source tree (odoo-bin, odoo/, addons/)
#   .cache/odoo/<series>-<source id>/venv  a virtualenv with Odoo's requirements
#   .cache/odoo/current                    -> the prepared one
# The source comes from ODOO_SOURCE (a .tar.gz or a folder); by default the shared tarball
# (../shared/odoo/odoo-16.0-community.tar.gz) when present, else a shallow clone of Odoo's own repository
# (branch ODOO_SERIES, default 16.0) for users with internet access.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERIES="${ODOO_SERIES:-16.0}"
PYTHON="${ODOO_PYTHON:-python3}"
SHARED_TARBALL="$ROOT/../shared/odoo/odoo-$SERIES-community.tar.gz"
SOURCE="${ODOO_SOURCE:-}"
if [[ -z "$SOURCE" && -f "$SHARED_TARBALL" ]]; then SOURCE="$SHARED_TARBALL"; fi

if [[ -z "$SOURCE" ]]; then
  source_id="git-$SERIES"
elif [[ -f "$SOURCE" ]]; then
  source_id="$(sha256sum "$SOURCE" | cut -c1-12)"
elif [[ -d "$SOURCE" ]]; then
  source_id="dir-$(printf '%s' "$(cd "$SOURCE" && pwd)" | sha256sum | cut -c1-12)"
else
  echo "ODOO_SOURCE=$SOURCE is neither a file nor a folder" >&2; exit 1
fi
PY_TAG="$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
HOME_DIR="$ROOT/.cache/odoo/$SERIES-$source_id-$PY_TAG"
mkdir -p "$ROOT/.cache/odoo"

if [[ ! -f "$HOME_DIR/src/.done" ]]; then
  rm -rf "$HOME_DIR/src" "$HOME_DIR/src.tmp"
  mkdir -p "$HOME_DIR/src.tmp"
  if [[ -z "$SOURCE" ]]; then
    echo "fetching Odoo $SERIES from https://github.com/odoo/odoo (shallow clone)"
    git clone --quiet --depth 1 --branch "$SERIES" https://github.com/odoo/odoo.git "$HOME_DIR/src.tmp"
  elif [[ -f "$SOURCE" ]]; then
    echo "unpacking Odoo from $SOURCE"
    tar -xzf "$SOURCE" -C "$HOME_DIR/src.tmp" --strip-components=1
  else
    echo "copying Odoo from $SOURCE"
    cp -a "$SOURCE"/. "$HOME_DIR/src.tmp"/
  fi
  [[ -x "$HOME_DIR/src.tmp/odoo-bin" ]] || { echo "no odoo-bin in the Odoo source" >&2; exit 1; }
  # Odoo's processes run as the image's user (uid 101): the tree must be readable by anyone.
  chmod -R a+rX "$HOME_DIR/src.tmp"
  touch "$HOME_DIR/src.tmp/.done"
  mv "$HOME_DIR/src.tmp" "$HOME_DIR/src"
fi

# The official images install Odoo as a package: every addon sits in odoo/addons, and their odoo.conf
# only adds /mnt/extra-addons. The same layout here (links, the source tree unchanged otherwise), so an
# odoo.conf written for the image finds the same modules.
if [[ ! -f "$HOME_DIR/src/.image-layout" ]]; then
  for module in "$HOME_DIR"/src/addons/*/; do
    name="$(basename "$module")"
    [[ -e "$HOME_DIR/src/odoo/addons/$name" ]] || ln -s "../../addons/$name" "$HOME_DIR/src/odoo/addons/$name"
  done
  touch "$HOME_DIR/src/.image-layout"
fi

# Odoo's requirements.txt, adapted to binary wheels (shared/odoo/README.md): psycopg2 -> psycopg2-binary;
# python-ldap (only auth_ldap needs it, and it must compile against libldap) left out. gevent's own
# dependencies are unpinned upstream: a zope.interface built today has a normalised dist-info name
# (zope_interface) that pkg_resources, which gevent's monkey-patching plugins go through, cannot find,
# and prefork mode's gevent process (`workers` > 0) dies at import. Binary wheels of the Odoo 16 era
# are taken instead (checked below).
REQUIREMENTS="$(sed -e 's/^psycopg2==/psycopg2-binary==/' -e '/^python-ldap/d' "$HOME_DIR/src/requirements.txt")
zope.interface==6.0
zope.event==4.6"
WANTED_ID="$(printf '%s' "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [[ "$(cat "$HOME_DIR/venv/.installed" 2>/dev/null)" != "$WANTED_ID" ]]; then
  echo "installing Odoo's requirements into $HOME_DIR/venv (a few minutes, once)"
  rm -rf "$HOME_DIR/venv"
  "$PYTHON" -m venv "$HOME_DIR/venv"
  printf '%s\n' "$REQUIREMENTS" > "$HOME_DIR/requirements.txt"
  "$HOME_DIR/venv/bin/pip" install --quiet --upgrade pip 'setuptools<70' wheel
  "$HOME_DIR/venv/bin/pip" install --quiet --only-binary=zope.interface -r "$HOME_DIR/requirements.txt"
  # The server's prefork mode imports gevent with its plugins: check it here, not in a crash loop.
  "$HOME_DIR/venv/bin/python" -c 'import gevent.monkey; gevent.monkey.patch_all()' 
  "$HOME_DIR/venv/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import odoo, odoo.release; print("Odoo", odoo.release.version, "imports")' "$HOME_DIR/src"
  chmod -R a+rX "$HOME_DIR/venv"
  echo "$WANTED_ID" > "$HOME_DIR/venv/.installed"
fi
chmod a+rx "$ROOT/.cache" "$ROOT/.cache/odoo" "$HOME_DIR" 2>/dev/null || true
ln -sfn "$HOME_DIR" "$ROOT/.cache/odoo/current"
echo "Odoo $SERIES ready in $HOME_DIR"
