package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshlens/meshlens/controlplane/config"
)

// parseSnapshot reads Kubernetes-style multi-document YAML into a config
// snapshot with controlplane/config's own parser: what the translator sees
// in tests is exactly what users' YAML becomes.
func parseSnapshot(t testing.TB, version uint64, src string) *config.Snapshot {
	t.Helper()
	snap, err := decodeSnapshot(version, src)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// decodeSnapshot parses without validating, so tests can hand the
// translator configurations the config store would refuse.
func decodeSnapshot(version uint64, src string) (*config.Snapshot, error) {
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		return nil, err
	}
	objs, err := kinds.Parse([]byte(src))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(objs, func(a, b *config.Object) int { return strings.Compare(a.Key(), b.Key()) })
	return &config.Snapshot{Version: version, Objects: objs}, nil
}

// directive returns the value of a "# name: value" line in a test file.
func directive(src, name string) string {
	for _, l := range strings.Split(src, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "# "+name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// directives are the values of every "# name:" line of src, in order.
func directives(src, name string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "# "+name+":"); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// resourcesJSON renders resources as stable, indented protojson
// (protojson's own output deliberately varies its whitespace).
func resourcesJSON(t testing.TB, r *Resources) []byte {
	t.Helper()
	section := func(msgs []types.Resource) []json.RawMessage {
		out := []json.RawMessage{}
		for _, m := range msgs {
			b, err := protojson.Marshal(m)
			if err != nil {
				t.Fatalf("marshal %T: %v", m, err)
			}
			out = append(out, b)
		}
		return out
	}
	all := r.ByType()
	doc := map[string][]json.RawMessage{
		"listeners": section(all[resource.ListenerType]), "routes": section(all[resource.RouteType]),
		"clusters": section(all[resource.ClusterType]), "endpoints": section(all[resource.EndpointType]),
	}
	if len(r.Secrets) > 0 {
		doc["secrets"] = section(all[resource.SecretType])
	}
	compact, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, compact, "", "  "); err != nil {
		t.Fatal(fmt.Errorf("indent: %w", err))
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}
