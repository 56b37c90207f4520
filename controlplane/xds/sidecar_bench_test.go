package xds

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// sidecarBenchMesh is 1,000 services in 50 namespaces (20 each), each an
// HTTP ServiceEntry with two versions (DestinationRule subsets, so three
// clusters) and a VirtualService splitting them.
func sidecarBenchMesh(withSidecar bool) string {
	var b strings.Builder
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%02d", i/20)
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  hosts: [svc-%[1]d.%[2]s.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.%[3]d.%[4]d.1, labels: {version: v1}}, {address: 10.%[3]d.%[4]d.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  host: svc-%[1]d
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-%[1]d, namespace: %[2]s}
spec:
  hosts: [svc-%[1]d]
  http:
  - route:
    - {destination: {host: svc-%[1]d, subset: v1}, weight: 90}
    - {destination: {host: svc-%[1]d, subset: v2}, weight: 10}
`, i, ns, i/250, i%250)
	}
	if withSidecar {
		b.WriteString(`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns-00}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
`)
	}
	return b.String()
}

// BenchmarkSidecarScoping is make bench's Sidecar figure: per Envoy
// sidecar of namespace ns-00 in a mesh of 1,000 services, the xDS it is
// sent (bytes of all its resources, encoded) and the time to make them
// (translation and encoding, a push's work per proxy class), without a
// Sidecar and with one scoping it to its own namespace (20 services).
func BenchmarkSidecarScoping(b *testing.B) {
	for _, tc := range []struct {
		name    string
		sidecar bool
	}{{"no Sidecar", false}, {"Sidecar egress ./*", true}} {
		b.Run(tc.name, func(b *testing.B) {
			snap := parseSnapshot(b, 1, sidecarBenchMesh(tc.sidecar))
			node := Node{ID: "sidecar~10.0.0.1~app.ns-00~ns-00.svc.cluster.local", Flavour: FlavourEnvoy, Namespace: "ns-00", Labels: map[string]string{"app": "app"}}
			var bytes, resources int
			var spent time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				res, err := Translate(Input{Config: snap}, node, DefaultOptions())
				if err != nil {
					b.Fatal(err)
				}
				bytes, resources = 0, 0
				for _, items := range res.ByType() {
					for _, it := range items {
						enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(it)
						if err != nil {
							b.Fatal(err)
						}
						bytes += len(enc)
						resources++
					}
				}
				spent += time.Since(start)
			}
			b.ReportMetric(float64(bytes), "xds-bytes/proxy")
			b.ReportMetric(float64(resources), "resources/proxy")
			b.ReportMetric(float64(spent.Milliseconds())/float64(b.N), "ms/proxy")
		})
	}
}
