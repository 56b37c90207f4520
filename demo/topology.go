// Package demo runs a small mesh shaped like Istio's bookinfo, made of
// proxyless gRPC services: productpage calls details and reviews, and
// reviews v2 and v3 call ratings. Every outbound call is routed by an xDS
// control plane (meshlens), every instance reports OpenTelemetry traces, and
// a load generator drives a steady, adjustable rate of requests. Faults
// (errors, delays) can be injected per version to watch a rollout roll back.
package demo

import "fmt"

// Instance is one workload of the demo mesh: one version of one service,
// served by its own gRPC server on its own loopback port.
type Instance struct {
	Service string
	Version string
	// Calls lists the services this instance calls for each request it serves.
	Calls []string
}

// Workload is the instance's workload name, as Kubernetes would name the
// Deployment: "reviews-v2".
func (i Instance) Workload() string { return i.Service + "-" + i.Version }

// Bookinfo is the demo topology.
func Bookinfo() []Instance {
	return []Instance{
		{Service: "productpage", Version: "v1", Calls: []string{"details", "reviews"}},
		{Service: "details", Version: "v1"},
		{Service: "reviews", Version: "v1"},
		{Service: "reviews", Version: "v2", Calls: []string{"ratings"}},
		{Service: "reviews", Version: "v3", Calls: []string{"ratings"}},
		{Service: "ratings", Version: "v1"},
	}
}

// services lists the distinct services of a topology in first-seen order,
// each with its versions.
func services(instances []Instance) (names []string, versions map[string][]string) {
	versions = map[string][]string{}
	for _, in := range instances {
		if _, ok := versions[in.Service]; !ok {
			names = append(names, in.Service)
		}
		versions[in.Service] = append(versions[in.Service], in.Version)
	}
	return names, versions
}

// Host is the fully qualified mesh host of a service in a namespace.
func Host(service, namespace string) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", service, namespace)
}

// Target is the gRPC dial target that resolves a service through xDS.
func Target(service, namespace string, port int) string {
	return fmt.Sprintf("xds:///%s:%d", Host(service, namespace), port)
}
