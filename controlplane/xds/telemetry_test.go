package xds

import (
	"fmt"
	"strings"
	"testing"
	"time"

	otellogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/open_telemetry/v3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlens/meshlens/collector/normalize"
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

// What meshlens-otel's access logger sends, once Envoy has filled in its
// command operators (every value a string, as Envoy's open_telemetry
// logger writes them), is a request record to meshlens' own collector:
// the proxy from the resource attributes, the callee from the cluster,
// status, duration and protocol from the attributes.
func TestTelemetryOTelAccessLogIsARequestToMeshlensCollector(t *testing.T) {
	tr := &translator{m: &model{}, node: Node{Flavour: FlavourEnvoy}, opts: Options{TelemetryOTLPAddress: "meshlens:4317"}}
	al := tr.accessLog(config.TelemetryProviderOTel, identityOf("default", map[string]string{"app": "api", "version": "v1"}, "outbound"), false)
	cfg := &otellogv3.OpenTelemetryAccessLogConfig{}
	if err := al.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatal(err)
	}
	envoy := map[string]string{ // what Envoy writes for one failed request
		"%UPSTREAM_CLUSTER%": "outbound|9080|v2|reviews.default.svc.cluster.local", "%RESPONSE_CODE%": "503",
		"%DURATION%": "12", "%GRPC_STATUS_NUMBER%": "-", "%REQ(:METHOD)%": "GET", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%": "/reviews/1",
		"%PROTOCOL%": "HTTP/1.1", "%RESPONSE_FLAGS%": "UF", "%BYTES_RECEIVED%": "0", "%BYTES_SENT%": "91",
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	for _, kv := range cfg.GetResourceAttributes().GetValues() {
		rl.Resource().Attributes().PutStr(kv.GetKey(), kv.GetValue().GetStringValue())
	}
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1_800_000_000, 0)))
	for _, kv := range cfg.GetAttributes().GetValues() {
		v := kv.GetValue().GetStringValue()
		if strings.HasPrefix(v, "%") {
			if w, ok := envoy[v]; ok {
				v = w
			} else {
				v = "-" // Envoy's value for what it does not know
			}
		}
		lr.Attributes().PutStr(kv.GetKey(), v)
	}
	recs, rows := normalize.Logs(ld, normalize.LogOptions{})
	if len(recs) != 1 || len(rows) != 0 {
		t.Fatalf("%d records and %d log rows, want one request", len(recs), len(rows))
	}
	r := recs[0]
	if r.Source.Service != "api" || r.Source.Namespace != "default" || r.Source.Version != "v1" {
		t.Errorf("caller %+v, want api@v1 in default", r.Source)
	}
	if r.Destination.Service != "reviews" || r.Destination.Version != "v2" {
		t.Errorf("callee %+v, want reviews@v2", r.Destination)
	}
	if r.Code != 503 || r.Duration != 12*time.Millisecond || r.Protocol != "http" || r.GRPCStatus != -1 || r.Flags != "UF" || r.BytesOut != 91 || r.TraceID != "" {
		t.Errorf("record %+v, want HTTP 503 in 12ms, flags UF, 91 bytes out, no trace", r)
	}
}
