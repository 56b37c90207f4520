package collector_test

import (
	"testing"
	"time"

	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"

	"github.com/meshlens/meshlens/collector"
)

// TestALSStreamOverItsRateIsSlowedNotDropped sends 500 entries at once on
// one ALS stream limited to 100 a second: the stream is read more slowly
// (the bites are counted), and every entry still lands.
func TestALSStreamOverItsRateIsSlowedNotDropped(t *testing.T) {
	h := startCollectorB(t, func(c *collector.Config) { c.ALSMaxEntriesPerSecond = 100 })
	stream := alsStream(t, h.cfg.ALS)
	cluster := "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
	start := time.Now()
	for i := 0; i < 5; i++ {
		var entries []*datav3.HTTPAccessLogEntry
		for j := 0; j < 100; j++ {
			entries = append(entries, httpEntry(cluster, 200, time.Millisecond))
		}
		m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
		if i == 0 {
			m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: istioNode("productpage", "v1", "bookinfo"), LogName: "als"}
		}
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 3500*time.Millisecond {
		t.Errorf("500 entries at 100/s (burst 100) took %s, want about 4s", d)
	}
	// Each message after the first waits for the bucket to refill, unless
	// the machine was so busy that a second passed between two reads: so
	// between one bite and four.
	if n := metricValue(t, h.reg, "meshlens_limit_exceeded_total"); n < 1 || n > 4 {
		t.Errorf("rate bites counted: %v, want 1 to 4 (about every message after the first)", n)
	}
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("access_logs"), 500)
}
