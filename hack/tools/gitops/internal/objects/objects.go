// Package objects reads Kubernetes objects from a stream and writes one JSON line per result.
package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Read decodes every object of a YAML (one or more documents) or JSON stream. Lists (kind List or
// any *List with items) are flattened. Objects are decoded the way client-go decodes them, so
// integers are int64 as in a controller's cache.
func Read(r io.Reader) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var result []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return result, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("not a Kubernetes object: %w", err)
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				result = append(result, &list.Items[i])
			}
			continue
		}
		result = append(result, obj)
	}
}

// Result is one output line.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
	Error     string `json:"error,omitempty"`
}

// ResultFor starts a Result naming the object.
func ResultFor(obj *unstructured.Unstructured) Result {
	return Result{Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Print writes one JSON line.
func Print(w io.Writer, result Result) {
	line, err := json.Marshal(result)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(w, string(line))
}
