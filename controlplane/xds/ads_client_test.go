package xds

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// adsClient is a raw ADS stream acting as a proxyless gRPC node: it
// subscribes to named resources and ACKs every response. Tests and the
// benchmark use it where thousands of full grpc-go channels would be too
// heavy.
type adsClient struct {
	id     string
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	names  map[string][]string
	node   *corev3.Node

	mu    sync.Mutex
	acked map[string]string // type URL → version
	last  map[string]*discovery.DiscoveryResponse
	seen  chan struct{} // signalled (non-blocking) after each ACK
}

func newADSClient(ctx context.Context, cc *grpc.ClientConn, id string, names map[string][]string) (*adsClient, error) {
	md, _ := structpb.NewStruct(map[string]any{MetaGenerator: "grpc", MetaNamespace: "default"})
	return newADSClientAs(ctx, cc, &corev3.Node{Id: id, UserAgentName: "gRPC Go", Metadata: md}, names)
}

// newADSClientAs opens the stream as the given node.
func newADSClientAs(ctx context.Context, cc *grpc.ClientConn, node *corev3.Node, names map[string][]string) (*adsClient, error) {
	id := node.GetId()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("ads stream for %s: %w", id, err)
	}
	a := &adsClient{
		id: id, stream: s, names: names, node: node,
		acked: map[string]string{}, seen: make(chan struct{}, 1),
		last: map[string]*discovery.DiscoveryResponse{},
	}
	first := true
	for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		if _, ok := names[typ]; !ok {
			continue
		}
		req := &discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]}
		if first {
			req.Node, first = a.node, false
		}
		if err := s.Send(req); err != nil {
			return nil, fmt.Errorf("subscribe %s for %s: %w", typ, id, err)
		}
	}
	return a, nil
}

// run receives and ACKs until the stream ends.
func (a *adsClient) run() error {
	for {
		resp, err := a.stream.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		if err := a.stream.Send(&discovery.DiscoveryRequest{
			TypeUrl: typ, ResourceNames: a.names[typ],
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
		}); err != nil {
			return err
		}
		a.mu.Lock()
		a.acked[typ] = resp.GetVersionInfo()
		a.last[typ] = resp
		a.mu.Unlock()
		select {
		case a.seen <- struct{}{}:
		default:
		}
	}
}

func (a *adsClient) ackedVersion(typ string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked[typ]
}

// waitAcked waits until the client has ACKed version v of typ.
func (a *adsClient) waitAcked(ctx context.Context, typ, v string) error {
	for a.ackedVersion(typ) != v {
		select {
		case <-a.seen:
		case <-ctx.Done():
			return fmt.Errorf("%s never acked %s version %s (has %q)", a.id, typ, v, a.ackedVersion(typ))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// grpcNodeNames are the resources a grpc-go client of xds:///echoTarget
// asks for, given the subsets it may be routed to.
func grpcNodeNames(subsets ...string) map[string][]string {
	clusters := []string{outboundName(9000, "", echoHost)}
	for _, s := range subsets {
		clusters = append(clusters, outboundName(9000, s, echoHost))
	}
	return map[string][]string{
		resource.ListenerType: {echoTarget}, resource.RouteType: {echoTarget},
		resource.ClusterType: clusters, resource.EndpointType: clusters,
	}
}

// resourceNames lists the names in the last response of a type.
func (a *adsClient) resourceNames(typ string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.last[typ].GetResources() {
		out = append(out, resourceName(r))
	}
	slices.Sort(out)
	return out
}
