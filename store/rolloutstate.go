package store

import (
	"context"
	"fmt"
)

// TableRolloutState holds the rollouts' state as the acting replica saved
// it (migration 6).
const TableRolloutState = "rollout_state"

// RolloutStateRow is one saved state of one rollout ("namespace/name"): when
// (Updated, Unix nanoseconds, orders the saves), by which replica, and the
// state as JSON (package rollout owns its shape).
type RolloutStateRow struct {
	Key     string
	Updated uint64
	Replica string
	State   string
}

// SaveRolloutState stores row as the newest state of its rollout.
func (s *Store) SaveRolloutState(ctx context.Context, row RolloutStateRow) error {
	if err := s.insertColumns(ctx, TableRolloutState, []string{"key", "updated", "replica", "state"},
		[]any{[]string{row.Key}, []uint64{row.Updated}, []string{row.Replica}, []string{row.State}}); err != nil {
		return fmt.Errorf("save rollout state %s: %w", row.Key, err)
	}
	return nil
}

// RolloutStates returns the newest saved state of every rollout.
func (s *Store) RolloutStates(ctx context.Context) ([]RolloutStateRow, error) {
	rows, err := s.Conn().Query(ctx, "SELECT key, max(updated), argMax(replica, updated), argMax(state, updated) FROM "+
		s.Table(TableRolloutState)+" GROUP BY key ORDER BY key")
	if err != nil {
		return nil, fmt.Errorf("read rollout states: %w", err)
	}
	defer rows.Close()
	var out []RolloutStateRow
	for rows.Next() {
		var r RolloutStateRow
		if err := rows.Scan(&r.Key, &r.Updated, &r.Replica, &r.State); err != nil {
			return nil, fmt.Errorf("read rollout states: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rollout states: %w", err)
	}
	return out, nil
}
