package store

import (
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// Tables.
const (
	TableAccessLogs   = "access_logs"   // one row per mesh request record
	TableSpans        = "spans"         // raw spans, for trace lookup
	TableMetricPoints = "metric_points" // OTLP metric data points
	TableLogs         = "logs"          // OTLP log records that are not access logs
	TableEdges1m      = "edges_1m"      // per-minute edge rollup (AggregatingMergeTree)
	TableEdges1h      = "edges_1h"      // per-hour edge rollup, for long windows
	tableMigrations   = "schema_migrations"
)

// RawTables are the tables partitioned by day whose partitions retention drops.
var RawTables = []string{TableAccessLogs, TableSpans, TableMetricPoints, TableLogs, TableEdges1m, TableEdges1h}

// migration is one schema step. Steps are applied in order, once, and recorded
// in schema_migrations; every statement is also idempotent (IF NOT EXISTS) so
// a step interrupted half-way can be run again.
type migration struct {
	id    uint32
	name  string
	stmts []string
}

// schemaParams fill the statement templates: names, the column types that
// depend on the server version, and what differs on a cluster.
type schemaParams struct {
	DB       string
	LC       string // a low-cardinality string type
	ZSTD     string // a heavy-compression codec clause, or nothing
	Buckets  string // the latency bucket bounds in microseconds, as an array literal
	NBuckets int    // len(mesh.LatencyBucketsMs) + 1 for +Inf

	Cluster   string // the cluster's name; empty on one server
	OnCluster string // " ON CLUSTER name", or nothing
	Local     string // suffix of the tables that hold rows: "_local" on a cluster
	RecordsIn string // the table request records are inserted into, which the views read

	// What the server already has, read before the migrations run, for
	// statements 18.16 cannot make idempotent (it has no ADD COLUMN IF NOT
	// EXISTS, and no way to change a view's query in place).
	columns map[string]bool   // "table.column"
	queries map[string]string // table or view name → its CREATE statement
}

// HasColumn reports whether the table that holds table's rows (on a cluster,
// table_local) has column.
func (p schemaParams) HasColumn(table, column string) bool {
	return p.columns[table+p.Local+"."+column]
}

// ViewSelects reports whether view exists and its query contains text.
func (p schemaParams) ViewSelects(view, text string) bool {
	return strings.Contains(p.queries[view], text)
}

// Engine is the table engine of a table that holds rows: engine itself on one
// server; on a cluster its Replicated variant, one replica per server with
// the shard's rows, coordinated in ZooKeeper under a path per shard, database
// and table (macros {shard} and {replica} come from each server's config).
func (p schemaParams) Engine(engine, table string) string {
	if p.Cluster == "" {
		return engine
	}
	return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s%s', '{replica}')", engine, p.DB, table, p.Local)
}

func (s *Store) params() schemaParams {
	p := schemaParams{DB: s.db, LC: "String", Cluster: s.cluster, OnCluster: s.onCluster(), RecordsIn: TableAccessLogs}
	if s.cluster != "" {
		p.Local = localSuffix
		p.RecordsIn = recordsIngest + localSuffix
	}
	if s.features.LowCardinality {
		p.LC = "LowCardinality(String)"
	}
	if s.features.Codecs {
		p.ZSTD = " CODEC(ZSTD(1))"
	}
	bounds := make([]string, len(mesh.LatencyBucketsMs))
	for i, ms := range mesh.LatencyBucketsMs {
		bounds[i] = fmt.Sprintf("%d", uint64(ms*1000))
	}
	p.Buckets = "[" + strings.Join(bounds, ", ") + "]"
	p.NBuckets = len(bounds) + 1
	return p
}

// The edge rollup dimensions, shared by both rollups and the history queries.
const edgeKey = `src_namespace, src_service, src_workload, src_version,
  dst_namespace, dst_service, dst_workload, dst_version, protocol, code, grpc_status`

// rollupColumns are the aggregate states kept per edge and interval. The
// latency histogram counts requests per bucket of mesh.LatencyBucketsMs plus
// +Inf (non-cumulative), so percentiles are computed exactly as the live graph
// and Prometheus compute them.
const rollupColumns = `requests AggregateFunction(count),
  mtls AggregateFunction(sum, UInt8),
  bytes_in AggregateFunction(sum, UInt64),
  bytes_out AggregateFunction(sum, UInt64),
  duration_sum_us AggregateFunction(sum, UInt64),
  latency AggregateFunction(sumForEach, Array(UInt64))`

// rollupSelect turns access_logs rows into rollup states for the interval
// computed by {{.Interval}}. It is the view's query as migration 1 made it;
// rollupView is today's.
const rollupSelect = `SELECT {{.Interval}} AS t, ` + edgeKey + `,
  countState() AS requests,
  sumState(mtls) AS mtls,
  sumState(bytes_in) AS bytes_in,
  sumState(bytes_out) AS bytes_out,
  sumState(duration_us) AS duration_sum_us,
  sumForEachState(arrayMap(i -> toUInt64(i = arrayCount(b -> b < duration_us, {{.Buckets}})), range({{.NBuckets}}))) AS latency{{.Digest}}
FROM {{.DB}}.{{.RecordsIn}}
GROUP BY t, ` + edgeKey

// rollupDigest is a state no two different writes share: the XOR of a hash
// of each row's identity (its time, trace, span and writer batch). A
// replicated table drops a block whose checksum it has seen among its last
// blocks, which is how a retried write lands once; without the digest, two
// writes of the same shape (one request each on a quiet edge, with the same
// code and latency bucket, in the same minute) roll up to identical blocks
// and the second would be dropped as a retry of the first. The retry of a
// write still produces the same digest, so it is still dropped.
const rollupDigest = `,
  groupBitXorState(cityHash64(time_ns, trace_id, span_id, batch)) AS digest`

// addDigest adds the digest column to a rollup table that lacks it.
func addDigest(table string) string {
	return `{{if not (.HasColumn "` + table + `" "digest")}}ALTER TABLE {{.DB}}.` + table + `{{.Local}}{{.OnCluster}}
ADD COLUMN digest AggregateFunction(groupBitXor, UInt64){{end}}`
}

// rollupView is the statement that creates the rollup view named view into
// table, for the interval computed by interval.
func rollupView(view, table, interval string) string {
	q := strings.NewReplacer("{{.Interval}}", interval, "{{.Digest}}", rollupDigest).Replace(rollupSelect)
	return `CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.` + view + `{{.OnCluster}} TO {{.DB}}.` + table + `{{.Local}} AS ` + q
}

// Sharding keys of the Distributed tables on a cluster. Every row of a trace
// (its spans, the request records paired from them or logged with its trace
// id, its logs) goes to one shard, so a trace is whole on its shard and the
// trace search's IN (subquery) runs on each shard over its local table
// (query.SearchTraces). Rows without a trace id spread by time. The keys are
// deterministic, so a retried write sends each row to the same shard again
// and the shard's replicated table drops the blocks it already has.
const (
	traceShardKey = "cityHash64(trace_id, if(trace_id = '', time_ns, 0))"
	spanShardKey  = "cityHash64(trace_id, if(trace_id = '', start_ns, 0))" // the same value for the same trace
	// One metric series per shard.
	seriesShardKey = "cityHash64(name, namespace, service, version)"
)

// recordsIngest is, on a cluster, the Distributed table request records are
// written to. It sends each row to its shard's access_logs_ingest_local, a
// Null table whose views copy the rows into access_logs_local and roll them
// up into edges_1m_local and edges_1h_local. Each of those three is
// replicated and drops blocks it already has, so a write that failed half
// way (the raw rows stored, the rollup not, ZooKeeper lost in between) and is
// retried completes each of them once; views on access_logs_local itself
// would not run again for rows it already has.
const recordsIngest = "access_logs_ingest"

// distributed creates, on a cluster only, the Distributed table with the
// plain name over table_local on every shard; shardingKey is empty for tables
// that are only read through it (the rollups, which the views write on each
// shard).
func distributed(table, shardingKey string) string {
	if shardingKey != "" {
		shardingKey = ", " + shardingKey
	}
	return `{{if .Cluster}}CREATE TABLE IF NOT EXISTS {{.DB}}.` + table + `{{.OnCluster}} AS {{.DB}}.` + table + `{{.Local}}
ENGINE = Distributed({{.Cluster}}, {{.DB}}, ` + table + `{{.Local}}` + shardingKey + `){{end}}`
}

// The migrations. On a cluster every statement runs ON CLUSTER except the
// record of applied migrations, which each server keeps for itself (a
// meshlens that connects to another server re-runs the idempotent steps).
// Statements that render empty (the Distributed tables on one server) are
// skipped.
var migrations = []migration{
	{1, "baseline tables", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.schema_migrations (id UInt32, name String, applied DateTime)
ENGINE = MergeTree ORDER BY id`,

		`CREATE TABLE IF NOT EXISTS {{.DB}}.access_logs{{.Local}}{{.OnCluster}} (
  time DateTime,
  time_ns UInt64,
  src_namespace {{.LC}}, src_service {{.LC}}, src_workload {{.LC}}, src_version {{.LC}},
  dst_namespace {{.LC}}, dst_service {{.LC}}, dst_workload {{.LC}}, dst_version {{.LC}},
  protocol {{.LC}},
  method {{.LC}},
  path String,
  authority {{.LC}},
  code UInt16,
  grpc_status Int16,
  flags {{.LC}},
  duration_us UInt64,
  bytes_in UInt64,
  bytes_out UInt64,
  mtls UInt8,
  trace_id String,
  span_id String,
  origin {{.LC}},
  batch UInt64
) ENGINE = {{.Engine "MergeTree" "access_logs"}}
PARTITION BY toDate(time)
ORDER BY (dst_namespace, dst_service, time)`,
		// Read through access_logs, written through access_logs_ingest:
		// access_logs has no sharding key, so that a write that would skip
		// the rollups fails.
		distributed("access_logs", ""),
		`{{if .Cluster}}CREATE TABLE IF NOT EXISTS {{.DB}}.{{.RecordsIn}}{{.OnCluster}} AS {{.DB}}.access_logs{{.Local}} ENGINE = Null{{end}}`,
		`{{if .Cluster}}CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.access_logs_mv{{.OnCluster}} TO {{.DB}}.access_logs{{.Local}}
AS SELECT * FROM {{.DB}}.{{.RecordsIn}}{{end}}`,
		distributed(recordsIngest, traceShardKey),

		`CREATE TABLE IF NOT EXISTS {{.DB}}.spans{{.Local}}{{.OnCluster}} (
  time DateTime,
  start_ns UInt64,
  trace_id String,
  span_id String,
  parent_span_id String,
  name String,
  kind {{.LC}},
  namespace {{.LC}}, service {{.LC}}, workload {{.LC}}, version {{.LC}},
  duration_us UInt64,
  status_code {{.LC}},
  status_message String,
  attr_keys Array(String){{.ZSTD}},
  attr_values Array(String){{.ZSTD}},
  batch UInt64
) ENGINE = {{.Engine "MergeTree" "spans"}}
PARTITION BY toDate(time)
ORDER BY (trace_id, start_ns)`,
		distributed("spans", spanShardKey),

		`CREATE TABLE IF NOT EXISTS {{.DB}}.metric_points{{.Local}}{{.OnCluster}} (
  time DateTime,
  time_ns UInt64,
  name {{.LC}},
  type {{.LC}},
  unit {{.LC}},
  namespace {{.LC}}, service {{.LC}}, version {{.LC}},
  value Float64,
  count UInt64,
  sum Float64,
  bounds Array(Float64),
  bucket_counts Array(UInt64),
  attr_keys Array(String){{.ZSTD}},
  attr_values Array(String){{.ZSTD}},
  batch UInt64
) ENGINE = {{.Engine "MergeTree" "metric_points"}}
PARTITION BY toDate(time)
ORDER BY (name, service, time)`,
		distributed("metric_points", seriesShardKey),

		`CREATE TABLE IF NOT EXISTS {{.DB}}.logs{{.Local}}{{.OnCluster}} (
  time DateTime,
  time_ns UInt64,
  severity {{.LC}},
  body String{{.ZSTD}},
  namespace {{.LC}}, service {{.LC}}, workload {{.LC}}, version {{.LC}},
  trace_id String,
  span_id String,
  attr_keys Array(String){{.ZSTD}},
  attr_values Array(String){{.ZSTD}},
  batch UInt64
) ENGINE = {{.Engine "MergeTree" "logs"}}
PARTITION BY toDate(time)
ORDER BY (service, time)`,
		distributed("logs", traceShardKey),

		`CREATE TABLE IF NOT EXISTS {{.DB}}.edges_1m{{.Local}}{{.OnCluster}} (
  t DateTime,
  src_namespace {{.LC}}, src_service {{.LC}}, src_workload {{.LC}}, src_version {{.LC}},
  dst_namespace {{.LC}}, dst_service {{.LC}}, dst_workload {{.LC}}, dst_version {{.LC}},
  protocol {{.LC}}, code UInt16, grpc_status Int16,
  ` + rollupColumns + `
) ENGINE = {{.Engine "AggregatingMergeTree" "edges_1m"}}
PARTITION BY toDate(t)
ORDER BY (t, ` + edgeKey + `)`,
		distributed("edges_1m", ""),

		// A replicated table needs its own ZooKeeper path, so on a cluster
		// the engine is spelled out rather than copied.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.edges_1h{{.Local}}{{.OnCluster}} AS {{.DB}}.edges_1m{{.Local}}{{if .Cluster}}
ENGINE = {{.Engine "AggregatingMergeTree" "edges_1h"}}
PARTITION BY toDate(t)
ORDER BY (t, ` + edgeKey + `){{end}}`,
		distributed("edges_1h", ""),

		// The views sit on the local tables: each server rolls up the rows
		// inserted into it (on a cluster, into access_logs_ingest_local),
		// and replication copies the rollup rows like any others.
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.edges_1m_mv{{.OnCluster}} TO {{.DB}}.edges_1m{{.Local}} AS ` +
			strings.NewReplacer("{{.Interval}}", "toStartOfMinute(time)", "{{.Digest}}", "").Replace(rollupSelect),

		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.edges_1h_mv{{.OnCluster}} TO {{.DB}}.edges_1h{{.Local}} AS ` +
			strings.NewReplacer("{{.Interval}}", "toStartOfHour(time)", "{{.Digest}}", "").Replace(rollupSelect),
	}},
	// The audit trail: every accepted change, who made it, from where, what
	// it changed and the config version it produced. Partitioned by month
	// and never dropped by retention; baseline types only, so 18.16 has it.
	{2, "audit log", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.audit_log{{.Local}}{{.OnCluster}} (
  time DateTime,
  time_ns UInt64,
  actor String,
  remote String,
  source {{.LC}},
  action {{.LC}},
  kind {{.LC}},
  namespace {{.LC}},
  name String,
  config_version UInt64,
  diff String{{.ZSTD}},
  message String
) ENGINE = {{.Engine "MergeTree" "audit_log"}}
PARTITION BY toYYYYMM(time)
ORDER BY (time, time_ns)`,
		distributed("audit_log", "cityHash64(kind, namespace, name)"),
	}},
	// The rollups gain a digest of the rows they roll up (see rollupDigest):
	// on a cluster, two writes of the same shape were counted once. The
	// column comes first, so that the old views go on writing (an empty
	// digest) until the new ones replace them; between the DROP and the
	// CREATE of a view, a write that lands is not rolled up. Each step looks
	// at what the server has, so a migration cut short, or run again by a
	// meshlens connected to another server of the cluster, finishes it.
	{3, "rollups count every write", []string{
		addDigest("edges_1m"), addDigest("edges_1h"),
		`{{if not (.ViewSelects "edges_1m_mv" "digest")}}DROP TABLE IF EXISTS {{.DB}}.edges_1m_mv{{.OnCluster}}{{end}}`,
		rollupView("edges_1m_mv", "edges_1m", "toStartOfMinute(time)"),
		`{{if not (.ViewSelects "edges_1h_mv" "digest")}}DROP TABLE IF EXISTS {{.DB}}.edges_1h_mv{{.OnCluster}}{{end}}`,
		rollupView("edges_1h_mv", "edges_1h", "toStartOfHour(time)"),
	}},
	// Saved views of the topology UI, shared by every replica: each save or
	// delete is a new row (a delete has deleted = 1), and the newest row of a
	// name wins (see SavedViews), so no statement updates rows in place.
	// On a cluster, all rows of a name go to one shard.
	{4, "saved views", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.views{{.Local}}{{.OnCluster}} (
  name String,
  updated DateTime,
  updated_ns UInt64,
  owner String,
  deleted UInt8,
  body String
) ENGINE = {{.Engine "MergeTree" "views"}}
ORDER BY name`,
		distributed("views", "cityHash64(name)"),
	}},
	// Config applied through the REST API, shared by every replica outside
	// Kubernetes (config.Sharing): each apply or delete of an object is a
	// row with a revision (a delete has deleted = 1, a tombstone kept for
	// replicas that were down). Readers take the highest revision of a key
	// themselves, so nothing depends on merges; ReplacingMergeTree only
	// lets merges drop the superseded rows. On a cluster every row of a key
	// goes to one shard, where the merges can drop them.
	{5, "shared config", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.config_log{{.Local}}{{.OnCluster}} (
  key String,
  revision UInt64,
  replica String,
  deleted UInt8,
  object String{{.ZSTD}}
) ENGINE = {{if .Cluster}}ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{{.DB}}/config_log{{.Local}}', '{replica}', revision){{else}}ReplacingMergeTree(revision){{end}}
ORDER BY key`,
		distributed("config_log", "cityHash64(key)"),
	}},
	// The rollouts' state as the acting replica last saved it, for the
	// replicas that follow it outside Kubernetes (where the Rollouts'
	// status.engine holds it): one row per save, the newest of a rollout
	// wins (read with argMax; merges only drop older rows).
	{6, "shared rollout state", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.rollout_state{{.Local}}{{.OnCluster}} (
  key String,
  updated UInt64,
  replica String,
  state String{{.ZSTD}}
) ENGINE = {{if .Cluster}}ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{{.DB}}/rollout_state{{.Local}}', '{replica}', updated){{else}}ReplacingMergeTree(updated){{end}}
ORDER BY key`,
		distributed("rollout_state", "cityHash64(key)"),
	}},
}

// Migrate brings the schema up to date. It is safe to run on every start and
// concurrently with writers.
func (s *Store) Migrate(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == (Version{}) {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	return s.migrate(ctx)
}

func (s *Store) migrate(ctx context.Context) error {
	p := s.params()
	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT id FROM "+s.Table(tableMigrations))
	if err == nil {
		for rows.Next() {
			var id uint32
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("read %s: %w", tableMigrations, err)
			}
			applied[id] = true
		}
		rows.Close()
	} // else: the table does not exist yet; migration 1 creates it.

	for _, m := range migrations {
		if applied[m.id] {
			continue
		}
		if err := s.readSchema(ctx, &p); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.id, m.name, err)
		}
		for i, stmt := range m.stmts {
			sql, err := render(stmt, p)
			if err != nil {
				return fmt.Errorf("migration %d (%s) statement %d: %w", m.id, m.name, i+1, err)
			}
			if strings.TrimSpace(sql) == "" {
				continue
			}
			if err := s.ddl(ctx, sql); err != nil {
				return fmt.Errorf("migration %d (%s) statement %d on ClickHouse %s: %w", m.id, m.name, i+1, s.version, err)
			}
		}
		// Inserts go through a batch: clickhouse-go's Exec of INSERT ... VALUES
		// waits forever on 18.16.
		batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.Table(tableMigrations)+" (id, name, applied)")
		if err == nil {
			err = batch.Append(m.id, m.name, time.Now())
		}
		if err == nil {
			err = batch.Send()
		}
		if err != nil {
			return fmt.Errorf("record migration %d: %w", m.id, err)
		}
		s.logger.Info("clickhouse schema migrated", "migration", m.id, "name", m.name)
	}
	return nil
}

// readSchema fills p with the tables, views and columns the server has in
// the database.
func (s *Store) readSchema(ctx context.Context, p *schemaParams) error {
	p.columns, p.queries = map[string]bool{}, map[string]string{}
	rows, err := s.conn.Query(ctx, "SELECT table, name FROM system.columns WHERE database = ?", s.db)
	if err != nil {
		return fmt.Errorf("read the columns of database %s: %w", s.db, err)
	}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			rows.Close()
			return fmt.Errorf("read the columns of database %s: %w", s.db, err)
		}
		p.columns[table+"."+column] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the columns of database %s: %w", s.db, err)
	}
	rows, err = s.conn.Query(ctx, "SELECT name, create_table_query FROM system.tables WHERE database = ?", s.db)
	if err != nil {
		return fmt.Errorf("read the tables of database %s: %w", s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, query string
		if err := rows.Scan(&name, &query); err != nil {
			return fmt.Errorf("read the tables of database %s: %w", s.db, err)
		}
		p.queries[name] = query
	}
	return rows.Err()
}

func render(stmt string, p schemaParams) (string, error) {
	t, err := template.New("sql").Parse(stmt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
		return "", err
	}
	return b.String(), nil
}
