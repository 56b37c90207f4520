package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// TableAuditLog holds the audit trail.
const TableAuditLog = "audit_log"

// AuditRow is one accepted change.
type AuditRow struct {
	Time          time.Time `json:"time"`
	Actor         string    `json:"actor"`  // who: a token's fingerprint and role, a config file, Kubernetes, the rollout judge, an alert
	Remote        string    `json:"remote"` // from where: the client's address, when it came over the API
	Source        string    `json:"source"` // api, dir, kubernetes, rollout
	Action        string    `json:"action"` // create, update, delete; a rollout event (start, pause, rollback, ...)
	Kind          string    `json:"kind"`
	Namespace     string    `json:"namespace"`
	Name          string    `json:"name"`
	ConfigVersion uint64    `json:"configVersion,omitempty"` // the config version the change produced (its xDS push)
	Diff          string    `json:"diff,omitempty"`
	Message       string    `json:"message,omitempty"`
}

// InsertAudit writes audit rows.
func (s *Store) InsertAudit(ctx context.Context, rows []AuditRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		tm                                  = make([]time.Time, n)
		tns, ver                            = make([]uint64, n), make([]uint64, n)
		actor, remote, source, action, kind = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ns, name, diff, msg                 = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	)
	for i, r := range rows {
		tm[i], tns[i], ver[i] = r.Time, uint64(r.Time.UnixNano()), r.ConfigVersion
		actor[i], remote[i], source[i], action[i], kind[i] = r.Actor, r.Remote, r.Source, r.Action, r.Kind
		ns[i], name[i], diff[i], msg[i] = r.Namespace, r.Name, r.Diff, r.Message
	}
	return s.insertColumns(ctx, TableAuditLog, []string{
		"time", "time_ns", "actor", "remote", "source", "action", "kind", "namespace", "name", "config_version", "diff", "message",
	}, []any{tm, tns, actor, remote, source, action, kind, ns, name, ver, diff, msg})
}

// AuditQuery selects audit rows; empty fields match everything.
type AuditQuery struct {
	Kind, Namespace, Name, Actor string
	Since, Until                 time.Time
	Limit                        int
}

// Audit returns the rows matching q, newest first.
func (s *Store) Audit(ctx context.Context, q AuditQuery) ([]AuditRow, error) {
	var where []string
	var args []any
	for col, v := range map[string]string{"kind": q.Kind, "namespace": q.Namespace, "name": q.Name, "actor": q.Actor} {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "time_ns >= ?")
		args = append(args, uint64(q.Since.UnixNano()))
	}
	if !q.Until.IsZero() {
		where = append(where, "time_ns < ?")
		args = append(args, uint64(q.Until.UnixNano()))
	}
	sql := "SELECT time_ns, actor, remote, source, action, kind, namespace, name, config_version, diff, message FROM " + s.Table(TableAuditLog)
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += fmt.Sprintf(" ORDER BY time_ns DESC LIMIT %d", q.Limit)
	rows, err := s.Conn().Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	out := []AuditRow{}
	for rows.Next() {
		var r AuditRow
		var tns uint64
		if err := rows.Scan(&tns, &r.Actor, &r.Remote, &r.Source, &r.Action, &r.Kind, &r.Namespace, &r.Name, &r.ConfigVersion, &r.Diff, &r.Message); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.Time = time.Unix(0, int64(tns)).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}
