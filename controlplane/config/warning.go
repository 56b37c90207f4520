package config

import (
	"fmt"
	"sort"
)

// Warning is an analysis finding: config that Istio's validation webhook
// accepts but that probably does not do what its author meant, usually a
// reference to another object that does not exist (yet). It never refuses
// a change, as in Istio: the referenced object may arrive later, from
// another source, or live in the Kubernetes registry.
//
// Code is stable. It is `istioctl analyze`'s IST code where Istio has one
// for the finding, so users can look it up in Istio's documentation.
type Warning struct {
	Code    string `json:"code"`
	Object  string `json:"object"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Analysis codes, as `istioctl analyze` numbers them
// (istio/istio pkg/config/analysis/msg/messages.yaml).
const (
	// CodeReferencedResourceNotFound: a destination host, a subset, a
	// Rollout... that no object or registry defines.
	CodeReferencedResourceNotFound = "IST0101"
	// CodeConflictingMeshGatewayVirtualServiceHosts: two VirtualServices
	// route one host for sidecars; only one of them is used.
	CodeConflictingMeshGatewayVirtualServiceHosts = "IST0109"
	// CodeVirtualServiceHostNotFoundInGateway: a VirtualService bound to
	// a Gateway none of whose servers has its hosts.
	CodeVirtualServiceHostNotFoundInGateway = "IST0132"
	// CodeMultipleSidecarsWithoutWorkloadSelectors: a namespace has two
	// Sidecars for all of its workloads.
	CodeMultipleSidecarsWithoutWorkloadSelectors = "IST0123"
	// CodeConflictingGateways: servers of Gateways selecting the same
	// workloads claim one port for overlapping hosts.
	CodeConflictingGateways = "IST0145"
	// CodeSchemaWarning: what Istio's validation webhook accepts with a
	// warning (a WorkloadEntry without an address, a partial wildcard
	// host), as istioctl analyze reports it.
	CodeSchemaWarning = "IST0133"
	// CodeUnknownDestinationRuleHost: a DestinationRule for a host no
	// service defines.
	CodeUnknownDestinationRuleHost = "IST0174"
	// CodeInvalidTelemetryProvider: a Telemetry's access logging names no
	// provider, and there are no default providers: it does nothing.
	CodeInvalidTelemetryProvider = "IST0157"
	// CodeMultipleTelemetriesWithoutWorkloadSelectors: a namespace has two
	// Telemetries for all of its workloads.
	CodeMultipleTelemetriesWithoutWorkloadSelectors = "IST0160"
	// CodeInvalidGatewayCredential: the Secret a Gateway server's
	// credentialName names lacks a certificate, key or CA it needs.
	CodeInvalidGatewayCredential = "IST0161"
	// CodeJWKSUnavailable: the keys of a RequestAuthentication issuer
	// could not be fetched (yet), so its tokens are refused. Istio has no
	// code for it (istiod only logs the failure): meshlens' own.
	CodeJWKSUnavailable = "ML0001"
)

// codeNames are the names Istio gives the codes.
var codeNames = map[string]string{
	CodeReferencedResourceNotFound:                  "ReferencedResourceNotFound",
	CodeConflictingMeshGatewayVirtualServiceHosts:   "ConflictingMeshGatewayVirtualServiceHosts",
	CodeVirtualServiceHostNotFoundInGateway:         "VirtualServiceHostNotFoundInGateway",
	CodeConflictingGateways:                         "ConflictingGateways",
	CodeMultipleSidecarsWithoutWorkloadSelectors:    "MultipleSidecarsWithoutWorkloadSelectors",
	CodeSchemaWarning:                               "SchemaWarning",
	CodeUnknownDestinationRuleHost:                  "UnknownDestinationRuleHost",
	CodeInvalidTelemetryProvider:                    "InvalidTelemetryProvider",
	CodeMultipleTelemetriesWithoutWorkloadSelectors: "MultipleTelemetriesWithoutWorkloadSelectors",
	CodeInvalidGatewayCredential:                    "InvalidGatewayCredential",
	CodeJWKSUnavailable:                             "JwksUnavailable",
}

// CodeName is Istio's name for an analysis code ("ReferencedResourceNotFound"),
// or "" for a code meshlens does not know.
func CodeName(code string) string { return codeNames[code] }

func (w Warning) String() string {
	where := w.Object
	if w.Field != "" {
		where += " " + w.Field
	}
	return fmt.Sprintf("[%s] %s: %s", w.Code, where, w.Message)
}

// Warnings are the findings of one analysis, sorted by object, field, code.
type Warnings []Warning

func sortWarnings(ws Warnings) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		return a.Code < b.Code
	})
}

// warns collects the findings for one object while analysing it.
type warns struct {
	object string
	out    Warnings
}

func (w *warns) add(code, field, format string, args ...any) {
	w.out = append(w.out, Warning{Code: code, Object: w.object, Field: field, Message: fmt.Sprintf(format, args...)})
}
