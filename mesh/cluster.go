package mesh

import (
	"strconv"
	"strings"
)

// Cluster is a parsed Istio/Envoy cluster name "direction|port|subset|host",
// e.g. "outbound|9080|v2|reviews.default.svc.cluster.local".
type Cluster struct {
	Direction string // "outbound" or "inbound"
	Port      uint32
	Subset    string // the DestinationRule subset, by convention the version
	Host      string
}

// ParseCluster parses an Istio cluster name. ok is false for any other name.
func ParseCluster(name string) (c Cluster, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || (parts[0] != "outbound" && parts[0] != "inbound") {
		return Cluster{}, false
	}
	port, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return Cluster{}, false
	}
	return Cluster{Direction: parts[0], Port: uint32(port), Subset: parts[2], Host: parts[3]}, true
}

// String formats c back into its cluster name.
func (c Cluster) String() string {
	return c.Direction + "|" + strconv.FormatUint(uint64(c.Port), 10) + "|" + c.Subset + "|" + c.Host
}

// ServiceOfHost splits a Kubernetes-style host "name.namespace.svc.cluster.local"
// (or "name.namespace", or "name") into service and namespace.
func ServiceOfHost(host string) (service, namespace string) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) >= 2 && (len(parts) == 2 || parts[2] == "svc"):
		return parts[0], parts[1]
	default:
		return host, ""
	}
}
