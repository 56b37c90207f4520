package xds

import (
	"encoding/json"
	"fmt"
)

// CertFiles are a workload's identity and trust files, watched by grpc-go's
// file_watcher certificate provider.
type CertFiles struct {
	CertChain, PrivateKey, RootCA string
}

// GRPCBootstrap is the configuration of one proxyless gRPC process.
type GRPCBootstrap struct {
	ServerAddr string // meshlens' --xds address, host:port
	NodeID     string
	Cluster    string
	// Metadata is sent as node metadata (see the Meta* keys), e.g.
	// NAMESPACE and INSTANCE_IPS.
	Metadata map[string]string
	// Certs, if set, become the certificate provider instance that
	// ISTIO_MUTUAL / STRICT resources reference.
	Certs *CertFiles
	// CertProviderInstance names that instance; empty means "default", the
	// translator's default.
	CertProviderInstance string
	// ServerTLS, if set, makes the channel to meshlens' xDS server TLS:
	// RootCA verifies the server, CertChain and PrivateKey (if set) are the
	// client certificate for mutual TLS (--tls-client-ca).
	ServerTLS *CertFiles
}

// JSON renders the bootstrap file grpc-go reads from GRPC_XDS_BOOTSTRAP (a
// path) or GRPC_XDS_BOOTSTRAP_CONFIG (the contents).
func (b GRPCBootstrap) JSON() ([]byte, error) {
	if b.ServerAddr == "" || b.NodeID == "" {
		return nil, fmt.Errorf("grpc bootstrap: server address and node id are required")
	}
	md := map[string]string{MetaGenerator: "grpc"}
	for k, v := range b.Metadata {
		md[k] = v
	}
	creds := map[string]any{"type": "insecure"}
	if t := b.ServerTLS; t != nil {
		cfg := map[string]string{"ca_certificate_file": t.RootCA}
		if t.CertChain != "" {
			cfg["certificate_file"], cfg["private_key_file"] = t.CertChain, t.PrivateKey
		}
		creds = map[string]any{"type": "tls", "config": cfg}
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      b.ServerAddr,
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3"},
		}},
		"node":                                   map[string]any{"id": b.NodeID, "cluster": b.Cluster, "metadata": md},
		"server_listener_resource_name_template": ServerListenerTemplate,
	}
	if b.Certs != nil {
		name := b.CertProviderInstance
		if name == "" {
			name = DefaultOptions().CertProviderInstance
		}
		doc["certificate_providers"] = map[string]any{name: map[string]any{
			"plugin_name": "file_watcher",
			"config": map[string]any{
				"certificate_file":    b.Certs.CertChain,
				"private_key_file":    b.Certs.PrivateKey,
				"ca_certificate_file": b.Certs.RootCA,
				"refresh_interval":    "60s",
			},
		}}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("grpc bootstrap for node %s: %w", b.NodeID, err)
	}
	return out, nil
}
