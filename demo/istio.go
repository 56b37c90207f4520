package demo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Endpoint is where one instance listens.
type Endpoint struct {
	Instance Instance
	Port     int
}

// IstioConfig renders the demo's mesh as Istio objects, in one multi-document
// YAML: a ServiceEntry per service (its mesh port, selecting workloads by the
// app label), a WorkloadEntry per instance (loopback address, its own port,
// labels app and version), a DestinationRule per service with one subset per
// version, and a VirtualService splitting reviews by the given weights
// (version → percent; versions left out get no traffic).
func IstioConfig(namespace string, servicePort int, endpoints []Endpoint, reviewsSplit map[string]uint32) ([]byte, error) {
	instances := make([]Instance, len(endpoints))
	for i, e := range endpoints {
		instances[i] = e.Instance
	}
	names, versions := services(instances)
	var docs []any
	obj := func(apiVersion, kind, name string, spec any) map[string]any {
		return map[string]any{
			"apiVersion": apiVersion,
			"kind":       kind,
			"metadata":   map[string]any{"name": name, "namespace": namespace, "labels": map[string]string{"meshlens.io/demo": "bookinfo"}},
			"spec":       spec,
		}
	}
	const net = "networking.istio.io/v1"
	for _, svc := range names {
		docs = append(docs, obj(net, "ServiceEntry", svc, map[string]any{
			"hosts":            []string{Host(svc, namespace)},
			"location":         "MESH_INTERNAL",
			"resolution":       "STATIC",
			"ports":            []any{map[string]any{"number": servicePort, "name": "grpc", "protocol": "GRPC"}},
			"workloadSelector": map[string]any{"labels": map[string]string{"app": svc}},
		}))
	}
	for _, e := range endpoints {
		docs = append(docs, obj(net, "WorkloadEntry", e.Instance.Workload(), map[string]any{
			"address": "127.0.0.1",
			"ports":   map[string]int{"grpc": e.Port},
			"labels":  map[string]string{"app": e.Instance.Service, "version": e.Instance.Version},
		}))
	}
	for _, svc := range names {
		var subsets []any
		for _, v := range versions[svc] {
			subsets = append(subsets, map[string]any{"name": v, "labels": map[string]string{"version": v}})
		}
		docs = append(docs, obj(net, "DestinationRule", svc, map[string]any{
			"host":    Host(svc, namespace),
			"subsets": subsets,
		}))
	}
	if len(reviewsSplit) > 0 {
		var route []any
		var total uint32
		for _, v := range slices.Sorted(maps.Keys(reviewsSplit)) {
			w := reviewsSplit[v]
			if !slices.Contains(versions["reviews"], v) {
				return nil, fmt.Errorf("reviews split: version %q is not a reviews version (have %v)", v, versions["reviews"])
			}
			total += w
			if w == 0 {
				continue
			}
			route = append(route, map[string]any{
				"destination": map[string]any{"host": Host("reviews", namespace), "subset": v},
				"weight":      w,
			})
		}
		if total != 100 {
			return nil, fmt.Errorf("reviews split: weights sum to %d, want 100", total)
		}
		docs = append(docs, obj(net, "VirtualService", "reviews", map[string]any{
			"hosts": []string{Host("reviews", namespace)},
			"http":  []any{map[string]any{"name": "split", "route": route}},
		}))
	}
	var buf bytes.Buffer
	for i, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("render Istio object %d: %w", i, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// Applier posts configuration to meshlens' config API.
type Applier struct {
	// Server is meshlens' HTTP base URL, e.g. http://127.0.0.1:8080.
	Server string
	// Token is the operator token; if empty, TokenFile is read before
	// every attempt (meshlens serve writes it when it starts, which may be
	// after the demo starts).
	Token     string
	TokenFile string
	Client    *http.Client
	Logger    *slog.Logger
	// RetryEvery is the pause between attempts (default 1s).
	RetryEvery time.Duration
}

// errPermanent marks an answer that retrying will not change.
var errPermanent = errors.New("refused")

// Apply posts the YAML, retrying until meshlens answers or ctx ends. A
// refusal that retrying cannot fix (invalid config, forbidden) is returned
// at once.
func (a *Applier) Apply(ctx context.Context, body []byte) error {
	logger := cmp.Or(a.Logger, slog.New(slog.DiscardHandler))
	every := cmp.Or(a.RetryEvery, time.Second)
	var lastLog time.Time
	for attempt := 1; ; attempt++ {
		err := a.post(ctx, body)
		if err == nil {
			if attempt > 1 {
				logger.Info("meshlens answered", "server", a.Server, "attempts", attempt)
			}
			return nil
		}
		if errors.Is(err, errPermanent) {
			return err
		}
		if time.Since(lastLog) >= 10*time.Second {
			logger.Info("waiting for meshlens at "+a.Server, "reason", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apply demo config to %s: %w (last error: %v)", a.Server, ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

func (a *Applier) post(ctx context.Context, body []byte) error {
	token := a.Token
	if token == "" && a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return fmt.Errorf("read operator token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	url := strings.TrimRight(a.Server, "/") + "/api/v1/config"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post %s: %w: %w", url, errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := cmp.Or(a.Client, http.DefaultClient)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusUnprocessableEntity, resp.StatusCode == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("post %s: %w: %s: %s", url, errPermanent, resp.Status, bytes.TrimSpace(msg))
	default:
		// 401 is retried: the token file may be rewritten by a meshlens that is still starting.
		return fmt.Errorf("post %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
}
