//go:build tools

// Package tools pins the helm command built by hack/setup-k8s.sh (used by the chart tests).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
