package istiometrics

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meshlens/meshlens/mesh"
)

// Label indexes, in the sorted order Prometheus' client wants label pairs in.
// The names and their meaning are Istio's (istio/proxy,
// source/extensions/filters/http/istio_stats/istio_stats.cc).
const (
	lConnectionSecurityPolicy = iota
	lDestinationApp
	lDestinationCanonicalRevision
	lDestinationCanonicalService
	lDestinationCluster
	lDestinationPrincipal
	lDestinationService
	lDestinationServiceName
	lDestinationServiceNamespace
	lDestinationVersion
	lDestinationWorkload
	lDestinationWorkloadNamespace
	lGRPCResponseStatus
	lReporter
	lRequestProtocol
	lResponseCode
	lResponseFlags
	lSourceApp
	lSourceCanonicalRevision
	lSourceCanonicalService
	lSourceCluster
	lSourcePrincipal
	lSourceVersion
	lSourceWorkload
	lSourceWorkloadNamespace
	nLabels
)

var labelNames = [nLabels]string{
	"connection_security_policy",
	"destination_app",
	"destination_canonical_revision",
	"destination_canonical_service",
	"destination_cluster",
	"destination_principal",
	"destination_service",
	"destination_service_name",
	"destination_service_namespace",
	"destination_version",
	"destination_workload",
	"destination_workload_namespace",
	"grpc_response_status",
	"reporter",
	"request_protocol",
	"response_code",
	"response_flags",
	"source_app",
	"source_canonical_revision",
	"source_canonical_service",
	"source_cluster",
	"source_principal",
	"source_version",
	"source_workload",
	"source_workload_namespace",
}

// tcpLabel reports whether Istio's TCP metrics carry label i: they have no
// response code nor gRPC status.
func tcpLabel(i int) bool { return i != lGRPCResponseStatus && i != lResponseCode }

// Label values Istio writes. They are variables so label pairs can point at
// them instead of allocating.
var (
	vUnknown     = "unknown"
	vLatest      = "latest"
	vSource      = "source"
	vDestination = "destination"
	vMutualTLS   = "mutual_tls"
	vNone        = "none"
	vTCP         = "tcp"
)

// maxLabelBytes caps a label value. Kubernetes names are at most 253 bytes;
// anything longer is not a name a dashboard can show.
const maxLabelBytes = 256

// cleaner makes label values valid UTF-8 of at most maxLabelBytes, and
// counts what it changed.
type cleaner struct{ invalidUTF8, tooLong int }

func (c *cleaner) clean(s string) string {
	if !utf8.ValidString(s) {
		c.invalidUTF8++
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > maxLabelBytes {
		c.tooLong++
		cut := maxLabelBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// changed reports whether clean changed anything.
func (c *cleaner) changed() bool { return c.invalidUTF8+c.tooLong > 0 }

// orUnknown is Istio's value for a name it does not know.
func orUnknown(s string) string {
	if s == "" {
		return vUnknown
	}
	return s
}

// canonicalPeer is p as its labels will show it, so that two peers with the
// same labels are one series: names cleaned, a missing service, workload or
// namespace "unknown". The version stays empty when missing: an empty
// version and the version "unknown" have different canonical revisions
// ("latest" and "unknown").
func canonicalPeer(p mesh.Peer, c *cleaner) mesh.Peer {
	return mesh.Peer{
		Namespace: orUnknown(c.clean(p.Namespace)),
		Service:   orUnknown(c.clean(p.Service)),
		Workload:  orUnknown(c.clean(p.Workload)),
		Version:   c.clean(p.Version),
	}
}

// known reports whether a canonical peer was identified: its service is known.
func known(p *mesh.Peer) bool { return p.Service != vUnknown }

// versionLabel is Istio's *_version (the pod's version label, else "unknown").
func versionLabel(p *mesh.Peer) *string {
	if p.Version == "" {
		return &vUnknown
	}
	return &p.Version
}

// revisionLabel is Istio's *_canonical_revision (else "latest").
func revisionLabel(p *mesh.Peer) *string {
	if p.Version == "" {
		return &vLatest
	}
	return &p.Version
}

// serviceFQDN is Istio's destination_service: the service's host,
// NAME.NAMESPACE.svc.SUFFIX for a Kubernetes service, the host itself for
// one that already is a host name (a ServiceEntry's, an external one).
func serviceFQDN(p *mesh.Peer, suffix string) string {
	switch {
	case !known(p):
		return vUnknown
	case strings.Contains(p.Service, ".") || p.Namespace == vUnknown:
		return p.Service
	default:
		return p.Service + "." + p.Namespace + ".svc." + suffix
	}
}

// codeStrings are the response codes' label values, made once.
var codeStrings = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func codeLabel(code uint16) string {
	if int(code) < len(codeStrings) {
		return codeStrings[code]
	}
	return strconv.Itoa(int(code))
}

// grpcLabel is Istio's grpc_response_status: empty when not gRPC or unknown.
func grpcLabel(status int16) string {
	if status < 0 {
		return ""
	}
	return codeLabel(uint16(status))
}
