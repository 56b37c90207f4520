package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/controlplane/config"
)

// parseSnapshot reads Kubernetes-style multi-document YAML into a config
// snapshot. It is a test helper, independent of controlplane/config's parser.
func parseSnapshot(t testing.TB, version uint64, src string) *config.Snapshot {
	t.Helper()
	snap, err := decodeSnapshot(version, src)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func decodeSnapshot(version uint64, src string) (*config.Snapshot, error) {
	snap := &config.Snapshot{Version: version}
	for i, doc := range strings.Split(src, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var raw struct {
			APIVersion string          `json:"apiVersion"`
			Kind       string          `json:"kind"`
			Meta       config.Meta     `json:"metadata"`
			Spec       json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(js, &raw); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var spec proto.Message
		switch raw.Kind {
		case "VirtualService":
			spec = &networking.VirtualService{}
		case "DestinationRule":
			spec = &networking.DestinationRule{}
		case "ServiceEntry":
			spec = &networking.ServiceEntry{}
		case "WorkloadEntry":
			spec = &networking.WorkloadEntry{}
		case "PeerAuthentication":
			spec = &security.PeerAuthentication{}
		case "AuthorizationPolicy":
			spec = &security.AuthorizationPolicy{}
		default:
			return nil, fmt.Errorf("document %d: unknown kind %q", i, raw.Kind)
		}
		if len(raw.Spec) > 0 {
			js, err := istioDurations(raw.Spec)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", raw.Kind, raw.Meta.Name, err)
			}
			if err := protojson.Unmarshal(js, spec); err != nil {
				return nil, fmt.Errorf("%s %s: %w", raw.Kind, raw.Meta.Name, err)
			}
		}
		if raw.Meta.Namespace == "" {
			raw.Meta.Namespace = "default"
		}
		snap.Objects = append(snap.Objects, &config.Object{APIVersion: raw.APIVersion, Kind: raw.Kind, Meta: raw.Meta, Spec: spec})
	}
	sort.Slice(snap.Objects, func(a, b int) bool { return snap.Objects[a].Key() < snap.Objects[b].Key() })
	return snap, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
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

// resourcesJSON renders resources as stable, indented protojson
// (protojson's own output deliberately varies its whitespace).
func resourcesJSON(t testing.TB, r *Resources) []byte {
	t.Helper()
	section := func(msgs []proto.Message) []json.RawMessage {
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
	var ls, rs, cs, es []proto.Message
	for _, x := range r.Listeners {
		ls = append(ls, x)
	}
	for _, x := range r.Routes {
		rs = append(rs, x)
	}
	for _, x := range r.Clusters {
		cs = append(cs, x)
	}
	for _, x := range r.Endpoints {
		es = append(es, x)
	}
	doc := map[string][]json.RawMessage{
		"listeners": section(ls), "routes": section(rs), "clusters": section(cs), "endpoints": section(es),
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

// istioDurations rewrites Go-style durations ("300ms", "1m") that Istio
// accepts into the seconds form protojson requires ("0.3s", "60s").
func istioDurations(js []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case string:
			if strings.HasSuffix(x, "s") && strings.IndexFunc(x[:1], func(r rune) bool { return r < '0' || r > '9' }) < 0 || strings.HasSuffix(x, "m") || strings.HasSuffix(x, "h") {
				if d, err := time.ParseDuration(x); err == nil {
					return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
				}
			}
		}
		return x
	}
	return json.Marshal(walk(v))
}
