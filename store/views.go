package store

import (
	"context"
	"fmt"
	"time"
)

// TableViews holds the topology UI's saved views (migration 4).
const TableViews = "views"

// ViewRow is one saved view as stored: its name, who saved it last, when,
// and the view itself as JSON (package views owns its shape).
type ViewRow struct {
	Name    string
	Owner   string
	Updated time.Time
	Body    string
}

// SaveView stores row as the newest version of its view.
func (s *Store) SaveView(ctx context.Context, row ViewRow) error {
	return s.writeView(ctx, row, false)
}

// DeleteView records that the view named name is gone, at the given time and
// by owner.
func (s *Store) DeleteView(ctx context.Context, name, owner string, at time.Time) error {
	return s.writeView(ctx, ViewRow{Name: name, Owner: owner, Updated: at}, true)
}

func (s *Store) writeView(ctx context.Context, row ViewRow, deleted bool) error {
	del := uint8(0)
	if deleted {
		del = 1
	}
	err := s.insertColumns(ctx, TableViews, []string{"name", "updated", "updated_ns", "owner", "deleted", "body"}, []any{
		[]string{row.Name}, []time.Time{row.Updated}, []uint64{uint64(row.Updated.UnixNano())},
		[]string{row.Owner}, []uint8{del}, []string{row.Body},
	})
	if err != nil {
		return fmt.Errorf("save view %q: %w", row.Name, err)
	}
	return nil
}

// SavedViews lists the views that exist (their newest version is not a
// delete), by name, at most limit of them. With name set, it lists that
// view alone, if it exists.
func (s *Store) SavedViews(ctx context.Context, name string, limit int) ([]ViewRow, error) {
	// The newest row of each name wins; reads never depend on merges.
	sql := "SELECT name, max(updated_ns) AS ns, argMax(owner, updated_ns), argMax(deleted, updated_ns) AS del, argMax(body, updated_ns) FROM " +
		s.Table(TableViews)
	var args []any
	if name != "" {
		sql += " WHERE name = ?"
		args = append(args, name)
	}
	sql += fmt.Sprintf(" GROUP BY name HAVING del = 0 ORDER BY name LIMIT %d", limit)
	rows, err := s.Conn().Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read saved views: %w", err)
	}
	defer rows.Close()
	out := []ViewRow{}
	for rows.Next() {
		var (
			r   ViewRow
			ns  uint64
			del uint8
		)
		if err := rows.Scan(&r.Name, &ns, &r.Owner, &del, &r.Body); err != nil {
			return nil, fmt.Errorf("read saved views: %w", err)
		}
		r.Updated = time.Unix(0, int64(ns)).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read saved views: %w", err)
	}
	return out, nil
}
