package alerting

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// The rollout and alert rule examples apply as written on top of the Istio
// examples, each in a fresh store (the rollouts are alternatives for the
// same service).
func TestRolloutAndAlertRuleExamplesApply(t *testing.T) {
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), rollout.KindSpec(""), KindSpec())...)
	if err != nil {
		t.Fatal(err)
	}
	istio, err := filepath.Glob("../examples/istio/*.yaml")
	if err != nil || len(istio) == 0 {
		t.Fatalf("istio examples: %v", err)
	}
	var base []byte
	for _, f := range istio {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base = append(append(base, b...), "\n---\n"...)
	}
	for _, tc := range [][]string{
		{"rollout-canary.yaml", "alertrule-error-rate.yaml", "alertrule-latency-qps.yaml"},
		{"rollout-bluegreen.yaml"},
		{"rollout-ab.yaml"},
	} {
		t.Run(tc[0], func(t *testing.T) {
			store, err := config.Open(t.TempDir(), kinds, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatal(err)
			}
			docs := append([]byte(nil), base...)
			for _, f := range tc {
				b, err := os.ReadFile(filepath.Join("../examples", f))
				if err != nil {
					t.Fatal(err)
				}
				docs = append(append(docs, b...), "\n---\n"...)
			}
			objs, err := kinds.Parse(docs)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := store.Apply(context.Background(), objs); err != nil {
				t.Fatal(err)
			}
		})
	}
}
