package xds

import (
	"fmt"
	"testing"

	security "istio.io/api/security/v1beta1"
)

func TestPeerModePrecedence(t *testing.T) {
	const (
		mesh       = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: %s}}\n"
		namespace  = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: %s}}\n"
		workloadPA = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: w, namespace: default}\nspec: {selector: {matchLabels: {app: a}}, mtls: {mode: %s}, portLevelMtls: {8443: {mode: %s}}}\n"
	)
	sprintf := fmt.Sprintf
	for _, tc := range []struct {
		name string
		yaml string
		port uint32
		want security.PeerAuthentication_MutualTLS_Mode
	}{
		{"no policy is PERMISSIVE", "", 80, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"mesh STRICT applies", sprintf(mesh, "STRICT"), 80, security.PeerAuthentication_MutualTLS_STRICT},
		{"namespace overrides mesh", sprintf(mesh, "STRICT") + sprintf(namespace, "DISABLE"), 80, security.PeerAuthentication_MutualTLS_DISABLE},
		{"namespace UNSET inherits mesh", sprintf(mesh, "STRICT") + sprintf(namespace, "UNSET"), 80, security.PeerAuthentication_MutualTLS_STRICT},
		{"workload overrides namespace", sprintf(mesh, "STRICT") + sprintf(namespace, "DISABLE") + sprintf(workloadPA, "PERMISSIVE", "UNSET"), 80, security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"workload UNSET inherits namespace", sprintf(namespace, "STRICT") + sprintf(workloadPA, "UNSET", "UNSET"), 80, security.PeerAuthentication_MutualTLS_STRICT},
		{"port level overrides workload", sprintf(mesh, "PERMISSIVE") + sprintf(workloadPA, "STRICT", "DISABLE"), 8443, security.PeerAuthentication_MutualTLS_DISABLE},
		{"port level only for its port", sprintf(mesh, "PERMISSIVE") + sprintf(workloadPA, "STRICT", "DISABLE"), 80, security.PeerAuthentication_MutualTLS_STRICT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := buildModel(Input{Config: parseSnapshot(t, 1, tc.yaml)}, DefaultOptions(), nil)
			if err != nil {
				t.Fatal(err)
			}
			w := &workload{name: "a", namespace: "default", labels: map[string]string{"app": "a"}}
			if got := m.peerMode(w, tc.port); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
