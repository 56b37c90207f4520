package config

import (
	"strings"
	"testing"

	"github.com/prometheus/common/model"
)

// FuzzMetricTagValue: whatever a Telemetry's tagOverrides say, meshlens
// only ever writes a label whose name Prometheus accepts and whose value
// is a literal without quotes or a label it names.
func FuzzMetricTagValue(f *testing.F) {
	for _, s := range []string{"'x'", `"x"`, "response.code", "request.host", "'", `'a"`, "  'y'  ", "", "__name__", "a-b", "a1", "1a"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, expr, name string) {
		lit, label, ok := MetricTagValue(expr)
		if ok && label == "" && strings.ContainsAny(lit, `'"\`) {
			t.Errorf("MetricTagValue(%q) = literal %q with a quote", expr, lit)
		}
		if ok && label != "" && lit != "" {
			t.Errorf("MetricTagValue(%q) is both literal %q and label %q", expr, lit, label)
		}
		if !ok && (lit != "" || label != "") {
			t.Errorf("MetricTagValue(%q) not ok yet %q %q", expr, lit, label)
		}
		if MetricTagName(name) && !model.LegacyValidation.IsValidLabelName(name) {
			t.Errorf("MetricTagName(%q) accepts a name Prometheus refuses", name)
		}
	})
}
