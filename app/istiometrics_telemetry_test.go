package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/meshlens/meshlens/app/apptest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// A user applies examples/istio/telemetry.yaml: /metrics/istio loses the
// request_protocol label everywhere (the root namespace's Telemetry), the
// client-side size histograms of bookinfo's workloads (bookinfo's), and
// reviews' server-side request counts gain debug="true" (its own).
func TestAppliedTelemetryShapesTheIstioMetrics(t *testing.T) {
	s := apptest.Start(t, "--pair-wait", "1s")

	// productpage calls reviews v1..v3 in bookinfo, over OTLP/HTTP.
	td := meshtest.SpanPairs(1, 9)[0]
	for i := range td.ResourceSpans().Len() {
		attrs := td.ResourceSpans().At(i).Resource().Attributes()
		attrs.PutStr("k8s.namespace.name", "bookinfo")
		if v, _ := attrs.Get("service.name"); v.Str() == "frontend" {
			attrs.PutStr("service.name", "productpage")
		} else {
			attrs.PutStr("service.name", "reviews")
		}
	}
	pb, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+s.Config.Collector.OTLPHTTP+"/v1/traces", "application/x-protobuf", bytes.NewReader(pb))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP/HTTP export: %d", resp.StatusCode)
	}

	metrics := func() map[string]*ioFamily { return scrapeIstio(t, s) }
	meshtest.Eventually(t, 30*time.Second, "reviews' requests counted on /metrics/istio", func() error {
		if n := sumWhere(metrics()["istio_requests_total"], map[string]string{"reporter": "destination", "destination_canonical_service": "reviews"}); n != 9 {
			return fmt.Errorf("istio_requests_total of reviews (destination) = %v, want 9", n)
		}
		return nil
	})
	before := metrics()
	if !hasLabel(before["istio_requests_total"], "request_protocol") || len(where(before["istio_request_bytes"], map[string]string{"reporter": "source"})) == 0 {
		t.Fatalf("before any Telemetry: no request_protocol label or no client request sizes")
	}

	example, err := os.ReadFile("../examples/istio/telemetry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := applyWarnings(t, s, string(example)); strings.Contains(w, "metrics") {
		t.Errorf("the example's metrics are all applied, yet: %s", w)
	}
	meshtest.Eventually(t, 30*time.Second, "the Telemetries applied to /metrics/istio", func() error {
		got := metrics()
		if hasLabel(got["istio_requests_total"], "request_protocol") {
			return fmt.Errorf("istio_requests_total still has request_protocol")
		}
		if n := len(where(got["istio_request_bytes"], map[string]string{"reporter": "source"})); n != 0 {
			return fmt.Errorf("%d client-side istio_request_bytes series of bookinfo", n)
		}
		if n := len(where(got["istio_response_bytes"], map[string]string{"reporter": "destination"})); n == 0 {
			return fmt.Errorf("server-side istio_response_bytes are gone too")
		}
		if n := sumWhere(got["istio_requests_total"], map[string]string{"reporter": "destination", "destination_canonical_service": "reviews", "debug": "true"}); n != 9 {
			return fmt.Errorf("reviews' server-side requests with debug=\"true\": %v, want 9", n)
		}
		if n := len(where(got["istio_requests_total"], map[string]string{"reporter": "source", "debug": "true"})); n != 0 {
			return fmt.Errorf("productpage's client-side requests have debug=\"true\" (%d series)", n)
		}
		return nil
	})
}

type ioFamily = []map[string]string // label sets, the value under "__value__"

func scrapeIstio(t *testing.T, s *apptest.Server) map[string]*ioFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics/istio", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics/istio: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics/istio: %v", err)
	}
	out := map[string]*ioFamily{}
	for name, f := range fams {
		fam := ioFamily{}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			l["__value__"] = strconv.FormatFloat(v, 'g', -1, 64)
			fam = append(fam, l)
		}
		out[name] = &fam
	}
	return out
}

func where(f *ioFamily, match map[string]string) []map[string]string {
	if f == nil {
		return nil
	}
	var out []map[string]string
	for _, l := range *f {
		ok := true
		for k, v := range match {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func sumWhere(f *ioFamily, match map[string]string) float64 {
	var n float64
	for _, l := range where(f, match) {
		if v, err := strconv.ParseFloat(l["__value__"], 64); err == nil {
			n += v
		}
	}
	return n
}

func hasLabel(f *ioFamily, name string) bool {
	if f == nil {
		return false
	}
	for _, l := range *f {
		if _, ok := l[name]; ok {
			return true
		}
	}
	return false
}
