package store

import (
	"context"
	"fmt"
)

// TableConfigLog holds the config applied through the REST API, as every
// replica shares it (migration 5).
const TableConfigLog = "config_log"

// ConfigRow is one change of one config object: its key
// ("Kind/namespace/name"), the revision that orders changes of the same key
// (higher wins; equal revisions are ordered by Replica), the replica that
// made it, and the object as JSON, or Deleted.
type ConfigRow struct {
	Key      string
	Revision uint64
	Replica  string
	Deleted  bool
	Object   string
}

// AppendConfig writes config changes in one insert.
func (s *Store) AppendConfig(ctx context.Context, rows []ConfigRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	keys, replica, obj := make([]string, n), make([]string, n), make([]string, n)
	rev, del := make([]uint64, n), make([]uint8, n)
	for i, r := range rows {
		keys[i], rev[i], replica[i], obj[i] = r.Key, r.Revision, r.Replica, r.Object
		if r.Deleted {
			del[i] = 1
		}
	}
	if err := s.insertColumns(ctx, TableConfigLog, []string{"key", "revision", "replica", "deleted", "object"},
		[]any{keys, rev, replica, del, obj}); err != nil {
		return fmt.Errorf("write shared config: %w", err)
	}
	return nil
}

// ConfigSince returns the config changes with a revision of at least since
// (0: all there are), superseded ones included until merges drop them.
func (s *Store) ConfigSince(ctx context.Context, since uint64) ([]ConfigRow, error) {
	rows, err := s.Conn().Query(ctx, "SELECT key, revision, replica, deleted, object FROM "+s.Table(TableConfigLog)+" WHERE revision >= ?", since)
	if err != nil {
		return nil, fmt.Errorf("read shared config: %w", err)
	}
	defer rows.Close()
	var out []ConfigRow
	for rows.Next() {
		var (
			r   ConfigRow
			del uint8
		)
		if err := rows.Scan(&r.Key, &r.Revision, &r.Replica, &del, &r.Object); err != nil {
			return nil, fmt.Errorf("read shared config: %w", err)
		}
		r.Deleted = del == 1
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read shared config: %w", err)
	}
	return out, nil
}
