package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/collector/spool"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/store"
)

// readiness is what /readyz answers, from each part's state as it is now:
// not ready (an error) while telemetry or proxies cannot be served; ready
// with warnings while meshlens serves around a fault (ClickHouse gone:
// ingest queues on disk; a proxy NACKing; a Kubernetes watch failing).
type readiness struct {
	col     *collector.Collector
	st      *store.Store
	xds     *xds.Server
	cluster *cluster
	sharing *config.Sharing // nil unless replicas share config through ClickHouse
}

// queueWarnFill is the share of --queue-max-bytes from which /readyz warns.
const queueWarnFill = 0.8

func (r readiness) check(ctx context.Context) (warning string, err error) {
	if !r.col.Ready() {
		return "", errors.New("collector is starting")
	}
	xdsWarning, err := r.xds.Health()
	if err != nil {
		return "", err
	}
	kubeWarning, err := r.cluster.readiness()
	if err != nil {
		return "", err
	}
	used, max := r.col.QueueFill()
	if used >= max {
		return "", fmt.Errorf("ingest queue full (%d of %d MiB, --queue-max-bytes): OTLP and ALS are refused until ClickHouse takes what waits", used>>20, max>>20)
	}
	if r.col.DiskFull() {
		return "", fmt.Errorf("the data dir's disk is full (less than %d MiB free): OTLP and ALS are refused until there is room", spool.DiskReserve>>20)
	}
	var warnings []string
	if float64(used) >= queueWarnFill*float64(max) {
		warnings = append(warnings, fmt.Sprintf("ingest queue %d%% full (%d of %d MiB)", used*100/max, used>>20, max>>20))
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// EnsureSchema answers from memory once the schema is there: the ping
	// is what asks ClickHouse now.
	if err := r.st.EnsureSchema(pctx); err != nil {
		warnings = append(warnings, fmt.Sprintf("clickhouse unreachable (%s): telemetry is queued on disk until it is back", firstLine(err)))
	} else if err := r.st.Ping(pctx); err != nil {
		warnings = append(warnings, fmt.Sprintf("clickhouse unreachable (%s): telemetry is queued on disk until it is back", firstLine(err)))
	} else if since, err := r.st.WriteFailure(); err != nil {
		// A shard down, ZooKeeper gone: ClickHouse answers but refuses writes.
		warnings = append(warnings, fmt.Sprintf("clickhouse writes failing for %s (%s): telemetry is queued on disk until they succeed",
			time.Since(since).Round(time.Second), firstLine(err)))
	}
	if r.sharing != nil {
		if w := r.sharing.Health(); w != "" {
			warnings = append(warnings, w)
		}
	}
	for _, w := range []string{xdsWarning, kubeWarning} {
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	return strings.Join(warnings, "; "), nil
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
