package xds

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// MetaServiceAccount is the node metadata key of the workload's service
// account (Istio's).
const MetaServiceAccount = "SERVICE_ACCOUNT"

// RequireIdentity makes every xDS client prove who it is, as istiod's xDS
// authentication does: the client certificate (verified by the server's
// mutual TLS) carries a SPIFFE URI SAN spiffe://DOMAIN/ns/NS/sa/SA, and the
// node must claim that namespace (metadata NAMESPACE, or the one in an
// Istio node ID) and, when it names one, that service account (metadata
// SERVICE_ACCOUNT). A proxy cannot pose as another namespace to get its
// workload config. Call before serving.
func (s *Server) RequireIdentity() { s.requireIdentity = true }

// Identity is a workload identity from a SPIFFE ID.
type Identity struct {
	TrustDomain, Namespace, ServiceAccount string
}

func (id Identity) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// ParseSPIFFE reads spiffe://DOMAIN/ns/NS/sa/SA.
func ParseSPIFFE(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host == "" {
		return Identity{}, fmt.Errorf("%s is not a SPIFFE ID", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return Identity{}, fmt.Errorf("SPIFFE ID %s is not spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT", u)
	}
	return Identity{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}, nil
}

// peerIdentities are the SPIFFE identities of the stream's verified client
// certificate.
func peerIdentities(ctx context.Context) ([]Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, fmt.Errorf("no verified client certificate (the xDS server needs mutual TLS)")
	}
	leaf := info.State.VerifiedChains[0][0]
	var ids []Identity
	var errs []string
	for _, u := range leaf.URIs {
		id, err := ParseSPIFFE(u)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("client certificate %q has no SPIFFE URI SAN spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT %v", leaf.Subject, errs)
	}
	return ids, nil
}

// claimedNamespace is the namespace a node says it is in: metadata
// NAMESPACE, else the one in an Istio node ID TYPE~IP~POD.NS~NS.svc.DOMAIN.
func claimedNamespace(n *corev3.Node) string {
	if ns := n.GetMetadata().GetFields()[MetaNamespace].GetStringValue(); ns != "" {
		return ns
	}
	parts := strings.Split(n.GetId(), "~")
	if len(parts) == 4 {
		if _, ns, ok := strings.Cut(parts[2], "."); ok {
			return ns
		}
	}
	return ""
}

// authenticate checks the node's claims against the stream's identities.
func authenticate(ids []Identity, idErr error, n *corev3.Node) error {
	if idErr != nil {
		return status.Errorf(codes.Unauthenticated, "xds node %q: %v", n.GetId(), idErr)
	}
	ns := claimedNamespace(n)
	sa := n.GetMetadata().GetFields()[MetaServiceAccount].GetStringValue()
	if ns == "" {
		return status.Errorf(codes.PermissionDenied, "xds node %q claims no namespace (metadata NAMESPACE or an Istio node ID); its certificate is %s", n.GetId(), ids[0])
	}
	for _, id := range ids {
		if id.Namespace == ns && (sa == "" || id.ServiceAccount == sa) {
			return nil
		}
	}
	claim := "namespace " + ns
	if sa != "" {
		claim += ", service account " + sa
	}
	return status.Errorf(codes.PermissionDenied, "xds node %q claims %s, but its certificate is %s", n.GetId(), claim, ids[0])
}
