package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// DropPartitionsBefore drops the daily partitions of table whose every row is
// older than cutoff. Dropping whole partitions is cheap and works on every
// ClickHouse version, unlike TTL. It returns the partitions dropped. On a
// cluster it lists the partitions of every shard and drops them ON CLUSTER
// from the local tables (the replicas of a shard drop them through
// replication).
func (s *Store) DropPartitionsBefore(ctx context.Context, table string, cutoff time.Time) ([]string, error) {
	parts := "system.parts"
	if s.cluster != "" {
		parts = fmt.Sprintf("cluster('%s', system, parts)", s.cluster)
	}
	local := strings.TrimPrefix(s.LocalTable(table), s.db+".")
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT partition FROM `+parts+`
WHERE database = ? AND table = ? AND active
ORDER BY partition`, s.db, local)
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", table, err)
	}
	var drop []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list partitions of %s: %w", table, err)
		}
		// min_date/max_date are not kept for custom partition keys on old
		// servers, so decide on the partition's own date.
		day, err := time.Parse("2006-01-02", strings.Trim(p, "'"))
		if err != nil {
			continue // not a daily partition; leave it alone
		}
		if day.Before(cutoff.UTC().Truncate(24 * time.Hour)) {
			drop = append(drop, p)
		}
	}
	rows.Close()
	for _, p := range drop {
		// p is the partition value as the server prints it: 2026-11-24 on
		// 18.16, '2026-11-24' on newer servers. Quote it either way.
		lit := "'" + strings.Trim(p, "'") + "'"
		if err := s.ddl(ctx, fmt.Sprintf("ALTER TABLE %s%s DROP PARTITION %s", s.LocalTable(table), s.onCluster(), lit)); err != nil {
			return nil, fmt.Errorf("drop partition %s of %s: %w", p, table, err)
		}
	}
	return drop, nil
}

// Retention maps a table to how long its rows are kept. Zero keeps forever.
type Retention map[string]time.Duration

// DefaultRetention keeps raw data for a week and rollups for longer.
func DefaultRetention() Retention {
	return Retention{
		TableAccessLogs:   7 * 24 * time.Hour,
		TableSpans:        7 * 24 * time.Hour,
		TableMetricPoints: 7 * 24 * time.Hour,
		TableLogs:         7 * 24 * time.Hour,
		TableEdges1m:      14 * 24 * time.Hour,
		TableEdges1h:      90 * 24 * time.Hour,
	}
}

// Apply drops expired partitions of every table once.
func (r Retention) Apply(ctx context.Context, s *Store, now time.Time) error {
	for _, table := range RawTables {
		keep := r[table]
		if keep <= 0 {
			continue
		}
		dropped, err := s.DropPartitionsBefore(ctx, table, now.Add(-keep))
		if err != nil {
			return err
		}
		if len(dropped) > 0 {
			s.logger.Info("retention dropped partitions", "table", table, "partitions", dropped)
		}
	}
	return nil
}

// Run applies retention now and then hourly until ctx ends.
func (r Retention) Run(ctx context.Context, s *Store) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := r.Apply(ctx, s, time.Now()); err != nil && ctx.Err() == nil {
			s.logger.Warn("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
