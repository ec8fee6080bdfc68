// Command kstatus computes the status kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status) gives each
// object — what Flux's health checks, `kpt live status` and cli-utils' appliers wait on.
//
//	kstatus < objects.yaml
//
// Objects come on stdin (JSON, YAML, several documents or a List); one JSON line per object goes to
// stdout: {"kind","name","status","message"} with status Current, InProgress, Failed, Terminating,
// NotFound or Unknown. An error computing a status is reported in "error" and makes the exit status 1.
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"odoo-db-operator/hack/tools/gitops/internal/objects"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < objects")
		os.Exit(2)
	}
	objs, err := objects.Read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading objects:", err)
		os.Exit(2)
	}
	failed := false
	for _, obj := range objs {
		result := objects.ResultFor(obj)
		computed, err := status.Compute(obj)
		if err != nil {
			result.Error = err.Error()
			failed = true
		} else {
			result.Status = computed.Status.String()
			result.Message = computed.Message
		}
		objects.Print(os.Stdout, result)
	}
	if failed {
		os.Exit(1)
	}
}
