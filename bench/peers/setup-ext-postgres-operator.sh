#!/usr/bin/env bash
# Builds movetokube's ext-postgres-operator (Go module github.com/movetokube/postgres-operator), the
# peer that bench/bench_peers.py races, into .cache/peers/ext-postgres-operator/<version>/:
#   bin/ext-postgres-operator   the manager (its User-Agent in the audit log starts with that name)
#   crds/*.yaml                 its CRDs (Postgres, PostgresUser; group db.movetokube.com), from the same source
#   VERSION                     the module version built
# and prints that folder on its last line. Called by the benchmark, not by `make setup`; a second call
# with the same version costs nothing. Nothing of the peer is kept in this repository.
#
#   EXT_POSTGRES_OPERATOR_VERSION  module version to build (default: `latest` as the Go module proxy resolves it)
#   EXT_POSTGRES_OPERATOR_SRC      build from this source folder (a checkout) instead of the Go module proxy
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODULE=github.com/movetokube/postgres-operator
CACHE="$ROOT/.cache/peers/ext-postgres-operator"
PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "no Go toolchain (go) on PATH or in /usr/local/go/bin" >&2; exit 1; }

if [[ -n "${EXT_POSTGRES_OPERATOR_SRC:-}" ]]; then
  src="$(cd "$EXT_POSTGRES_OPERATOR_SRC" && pwd)"
  version="src-$(git -C "$src" describe --tags --always --dirty 2>/dev/null || echo unknown)"
else
  wanted="${EXT_POSTGRES_OPERATOR_VERSION:-latest}"
  echo "resolving $MODULE@$wanted through the Go module proxy" >&2
  if ! info="$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$wanted" 2>&1)"; then
    # Its answer, without the proxy's address.
    reason="$(python3 -c 'import json, re, sys; print(" ".join(re.sub(r"reading https?://\S+: ", "", json.load(sys.stdin)["Error"]).split()))' \
      <<<"$info" 2>/dev/null || echo "$info")"
    echo "the Go module proxy did not serve $MODULE@$wanted: $reason" >&2
    exit 2
  fi
  read -r version src < <(python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["Version"], d["Dir"])' <<<"$info")
fi

dest="$CACHE/$version"
if [[ -x "$dest/bin/ext-postgres-operator" && -f "$dest/VERSION" ]]; then
  echo "$dest"
  exit 0
fi

# The manager's package moved over the releases (operator-sdk's cmd/manager, then kubebuilder's cmd).
if [[ -f "$src/cmd/main.go" ]]; then main=./cmd
elif [[ -f "$src/cmd/manager/main.go" ]]; then main=./cmd/manager
else echo "no cmd/main.go nor cmd/manager/main.go in $src" >&2; exit 1
fi
crds=("$src"/config/crd/bases/db.movetokube.com_*.yaml)
[[ -f "${crds[0]}" ]] || crds=("$src"/deploy/crds/db.movetokube.com_*_crd.yaml)
[[ -f "${crds[0]}" ]] || { echo "no CRDs under config/crd/bases or deploy/crds in $src" >&2; exit 1; }

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/bin" "$dest.tmp/crds"
echo "building ext-postgres-operator $version ($main) — a few minutes the first time" >&2
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$dest.tmp/bin/ext-postgres-operator" "$main")
cp "${crds[@]}" "$dest.tmp/crds/"
chmod -R u+w "$dest.tmp"
echo "$version" > "$dest.tmp/VERSION"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
