// promql-check validates Prometheus alerting/recording rules the way `promtool check rules` does
// (rulefmt: structure, PromQL syntax, label names, annotation templates), without building promtool
// and its service-discovery dependencies. It accepts a plain rule file (`groups:`) or a
// PrometheusRule object (`spec.groups`), several YAML documents per file, or a bare expression
// with -expr. Built by hack/setup-k8s.sh into .cache/k8s/current/promql-check.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

type document struct {
	Kind   string         `yaml:"kind"`
	Groups []any          `yaml:"groups"`
	Spec   map[string]any `yaml:"spec"`
}

func checkFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	decoder := yaml.NewDecoder(bytes.NewReader(raw))
	rules := 0
	for index := 0; ; index++ {
		var doc document
		if err := decoder.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return rules, fmt.Errorf("document %d: %w", index, err)
		}
		groups := doc.Groups
		if doc.Kind == "PrometheusRule" {
			inner, _ := doc.Spec["groups"].([]any)
			groups = inner
		}
		if groups == nil {
			continue
		}
		content, err := yaml.Marshal(map[string]any{"groups": groups})
		if err != nil {
			return rules, err
		}
		parsed, errs := rulefmt.Parse(content, false, model.UTF8Validation, parser.NewParser(parser.Options{}),
			slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			return rules, fmt.Errorf("document %d: %w", index, errors.Join(errs...))
		}
		for _, group := range parsed.Groups {
			rules += len(group.Rules)
		}
	}
	if rules == 0 {
		return 0, errors.New("no rules found")
	}
	return rules, nil
}

func main() {
	expr := flag.String("expr", "", "check one PromQL expression instead of files")
	flag.Parse()
	if *expr != "" {
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(*expr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("SUCCESS")
		return
	}
	failed := false
	for _, path := range flag.Args() {
		count, err := checkFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: FAILED: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: SUCCESS: %d rules found\n", path, count)
	}
	if failed || flag.NArg() == 0 {
		os.Exit(1)
	}
}
