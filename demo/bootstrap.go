package demo

import (
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
)

// Bootstrap returns the grpc-go xDS bootstrap for one workload: the control
// plane at xdsAddr, plaintext, and a node identity in Istio's proxyless
// style (id "sidecar~IP~WORKLOAD.NAMESPACE~NAMESPACE.svc.cluster.local",
// metadata GENERATOR=grpc), so the control plane can tell it is a proxyless
// gRPC client, and which workload, namespace and labels it has.
func Bootstrap(xdsAddr string, id peerIdentity) ([]byte, error) {
	type server struct {
		ServerURI      string           `json:"server_uri"`
		ChannelCreds   []map[string]any `json:"channel_creds"`
		ServerFeatures []string         `json:"server_features"`
	}
	b := map[string]any{
		"xds_servers": []server{{
			ServerURI:      xdsAddr,
			ChannelCreds:   []map[string]any{{"type": "insecure"}},
			ServerFeatures: []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id":      fmt.Sprintf("sidecar~127.0.0.1~%s.%s~%s.svc.cluster.local", id.Workload, id.Namespace, id.Namespace),
			"cluster": id.Service,
			"metadata": map[string]any{
				"GENERATOR":     "grpc",
				"NAMESPACE":     id.Namespace,
				"WORKLOAD_NAME": id.Workload,
				"INSTANCE_IPS":  "127.0.0.1",
				"LABELS":        map[string]string{"app": id.Service, "version": id.Version},
			},
			"locality": map[string]any{},
		},
		// Inbound listeners, should an instance ever serve through xDS.
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	}
	return json.Marshal(b)
}

// xdsResolver builds an xds:/// resolver for one workload with its own
// bootstrap. grpc-go reads its bootstrap from a file or environment variable
// once per process; the demo runs several workloads in one process, each
// with its own node identity, so it hands each client its bootstrap
// directly. This is the only public grpc-go API for that (named "for
// testing"; it gives up CSDS, which the demo does not use).
func xdsResolver(xdsAddr string, id peerIdentity) (resolver.Builder, error) {
	b, err := Bootstrap(xdsAddr, id)
	if err != nil {
		return nil, fmt.Errorf("xDS bootstrap for %s: %w", id.Workload, err)
	}
	r, err := xds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		return nil, fmt.Errorf("xDS resolver for %s: %w", id.Workload, err)
	}
	return r, nil
}
