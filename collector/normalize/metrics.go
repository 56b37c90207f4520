package normalize

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/meshlens/meshlens/store"
)

// Metrics converts every data point into a metric row. Exponential
// histograms keep count and sum only.
func Metrics(md pmetric.Metrics) []store.MetricPoint {
	out := make([]store.MetricPoint, 0, md.DataPointCount())
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		peer := PeerOf(rm.Resource().Attributes())
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				base := store.MetricPoint{Name: m.Name(), Unit: m.Unit(), Peer: peer}
				point := func(t pcommon.Timestamp, attrs pcommon.Map) store.MetricPoint {
					p := base
					p.Time = t.AsTime()
					p.AttrKeys, p.AttrValues = flatten(attrs)
					return p
				}
				switch m.Type() {
				case pmetric.MetricTypeGauge, pmetric.MetricTypeSum:
					var dps pmetric.NumberDataPointSlice
					typ := "gauge"
					if m.Type() == pmetric.MetricTypeSum {
						dps, typ = m.Sum().DataPoints(), "sum"
					} else {
						dps = m.Gauge().DataPoints()
					}
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						p := point(dp.Timestamp(), dp.Attributes())
						p.Type = typ
						if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
							p.Value = float64(dp.IntValue())
						} else {
							p.Value = dp.DoubleValue()
						}
						out = append(out, p)
					}
				case pmetric.MetricTypeHistogram:
					dps := m.Histogram().DataPoints()
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						p := point(dp.Timestamp(), dp.Attributes())
						p.Type, p.Count, p.Sum = "histogram", dp.Count(), dp.Sum()
						p.Bounds, p.BucketCounts = dp.ExplicitBounds().AsRaw(), dp.BucketCounts().AsRaw()
						out = append(out, p)
					}
				case pmetric.MetricTypeExponentialHistogram:
					dps := m.ExponentialHistogram().DataPoints()
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						p := point(dp.Timestamp(), dp.Attributes())
						p.Type, p.Count, p.Sum = "histogram", dp.Count(), dp.Sum()
						out = append(out, p)
					}
				case pmetric.MetricTypeSummary:
					dps := m.Summary().DataPoints()
					for d := 0; d < dps.Len(); d++ {
						dp := dps.At(d)
						p := point(dp.Timestamp(), dp.Attributes())
						p.Type, p.Count, p.Sum = "summary", dp.Count(), dp.Sum()
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}
