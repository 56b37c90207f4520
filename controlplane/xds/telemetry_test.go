package xds

import (
	"fmt"
	"strings"
	"testing"

	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Which access-log providers a proxy's side ends up with, as Istio merges
// the root namespace's, the namespace's and the workload's Telemetries.
func TestTelemetryAccessLogProvidersFollowIstioPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string // Telemetries in the root namespace (istio-system) and default
		mode telemetry.WorkloadMode
		want string // provider[filter] ... in name order
	}{
		{name: "the namespace's providers replace the root namespace's", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: root, namespace: istio-system}
spec: {accessLogging: [{providers: [{name: envoy}]}]}
---
kind: Telemetry
metadata: {name: ns, namespace: default}
spec: {accessLogging: [{providers: [{name: meshlens-als}]}]}`, want: "meshlens-als"},
		{name: "a workload's disabled entry turns its provider off", mode: telemetry.WorkloadMode_SERVER, yaml: `
kind: Telemetry
metadata: {name: ns, namespace: default}
spec: {accessLogging: [{providers: [{name: meshlens-als}]}]}
---
kind: Telemetry
metadata: {name: api, namespace: default}
spec: {selector: {matchLabels: {app: api}}, accessLogging: [{providers: [{name: meshlens-als}], disabled: true}]}`, want: ""},
		{name: "a disabled entry for the other side changes nothing", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: ns, namespace: default}
spec: {accessLogging: [{providers: [{name: meshlens-als}]}]}
---
kind: Telemetry
metadata: {name: api, namespace: default}
spec: {selector: {matchLabels: {app: api}}, accessLogging: [{match: {mode: SERVER}, providers: [{name: meshlens-als}], disabled: true}]}`, want: "meshlens-als"},
		{name: "an entry without providers disables the ones named before it", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: ns, namespace: default}
spec: {accessLogging: [{providers: [{name: meshlens-otel}]}, {disabled: true}]}`, want: ""},
		{name: "each provider keeps the filter of the last entry naming it", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: root, namespace: istio-system}
spec: {accessLogging: [{providers: [{name: envoy}], filter: {expression: "response.code >= 400"}}]}
---
kind: Telemetry
metadata: {name: api, namespace: default}
spec: {selector: {matchLabels: {app: api}}, accessLogging: [{providers: [{name: envoy}, {name: meshlens-otel}], filter: {expression: "response.code >= 500"}}]}`,
			want: "envoy[response.code >= 500] meshlens-otel[response.code >= 500]"},
		{name: "another workload's Telemetry does not apply", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: root, namespace: istio-system}
spec: {accessLogging: [{providers: [{name: envoy}]}]}
---
kind: Telemetry
metadata: {name: web, namespace: default}
spec: {selector: {matchLabels: {app: web}}, accessLogging: [{providers: [{name: meshlens-als}]}]}`, want: "envoy"},
		{name: "another namespace's Telemetry does not apply", mode: telemetry.WorkloadMode_CLIENT, yaml: `
kind: Telemetry
metadata: {name: other, namespace: shop}
spec: {accessLogging: [{providers: [{name: meshlens-als}]}]}`, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var docs []string
			for _, d := range strings.Split(tc.yaml, "\n---\n") {
				docs = append(docs, "apiVersion: telemetry.istio.io/v1\n"+strings.TrimSpace(d))
			}
			snap := parseSnapshot(t, 1, strings.Join(docs, "\n---\n"))
			m, err := buildModel(Input{Config: snap}, DefaultOptions(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range accessLogProviders(m.telemetries("default", map[string]string{"app": "api"}), tc.mode) {
				s := p.name
				if p.filter != "" {
					s += fmt.Sprintf("[%s]", p.filter)
				}
				got = append(got, s)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("providers %q, want %q", g, tc.want)
			}
		})
	}
	if !config.TelemetryProviderLogs(config.TelemetryProviderEnvoy) || config.TelemetryProviderTraces(config.TelemetryProviderALS) {
		t.Error("envoy must log, meshlens-als must not trace")
	}
}
