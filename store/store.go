// Package store owns meshlens' ClickHouse: the connection, server-version
// detection, the schema and its idempotent migration, batch inserts of mesh
// request records, spans and metric points, and retention by dropping whole
// daily partitions. The collector writes through it and the query API reads
// through it. It runs on one server or on a cluster (OnCluster).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDSN is where meshlens looks for ClickHouse unless told otherwise.
const DefaultDSN = "clickhouse://127.0.0.1:9000/meshlens"

// Store is a connection to the meshlens database.
type Store struct {
	conn    driver.Conn
	db      string
	cluster string // the ClickHouse cluster's name; empty for one server
	logger  *slog.Logger

	mu       sync.Mutex
	ready    bool // database created and schema migrated
	version  Version
	features Features

	writeMu sync.Mutex
	failing map[string]writeFailure // by table: inserts failing since
}

// writeFailure is a table's first failed insert since its last success.
type writeFailure struct {
	since time.Time
	err   error
}

// Option configures a Store.
type Option func(*Store)

// OnCluster runs the store on the ClickHouse cluster of that name (a
// remote_servers entry of every server): the schema is created ON CLUSTER,
// rows live in Replicated*MergeTree tables named TABLE_local on each server,
// and reads and writes go through Distributed tables with the plain names, so
// Table and every query stay the same. An empty name is one server.
func OnCluster(name string) Option { return func(s *Store) { s.cluster = name } }

// clusterSettings go with every query on a cluster. (clickhouse-go can send
// only numeric settings to 18.16, so load_balancing, which decides which
// replica of a shard serves a query, belongs in the server profile of
// meshlens' user: in_order reads back at once what was just written.)
var clusterSettings = clickhouse.Settings{
	// A write through a Distributed table returns once every shard has its
	// rows, not once the server has spooled them for later: a shard that is
	// down fails the write, and the rows wait in meshlens' own queue.
	"insert_distributed_sync": 1,
	// How long ON CLUSTER DDL waits for servers that are up but slow; for
	// servers that are down it returns at once (see ddl).
	"distributed_ddl_task_timeout": 60,
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// New prepares a connection to the ClickHouse named by dsn
// (clickhouse://host:port/database) without contacting it: meshlens starts,
// and queues what it receives, even while ClickHouse is down. EnsureSchema
// makes it usable.
func New(dsn string, logger *slog.Logger, options ...Option) (*Store, error) {
	db, opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, logger: logger, failing: map[string]writeFailure{}}
	for _, o := range options {
		o(s)
	}
	if s.cluster != "" {
		if !identRE.MatchString(s.cluster) {
			return nil, fmt.Errorf("--clickhouse-cluster %q: a cluster name must match %s", s.cluster, identRE)
		}
		opts.Settings = clickhouse.Settings{}
		for k, v := range clusterSettings {
			opts.Settings[k] = v
		}
	}
	if s.conn, err = clickhouse.Open(opts); err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", redact(dsn), err)
	}
	return s, nil
}

// Open is New followed by EnsureSchema.
func Open(ctx context.Context, dsn string, logger *slog.Logger, options ...Option) (*Store, error) {
	s, err := New(dsn, logger, options...)
	if err != nil {
		return nil, err
	}
	if err := s.EnsureSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect is Open without the migration: it detects the version and creates
// the database.
func Connect(ctx context.Context, dsn string, logger *slog.Logger, options ...Option) (*Store, error) {
	s, err := New(dsn, logger, options...)
	if err != nil {
		return nil, err
	}
	if err := s.connect(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// EnsureSchema detects the server version, creates the database and migrates
// the schema, once; later calls return at once. It fails with a message that
// says what to check when the server cannot be reached.
func (s *Store) EnsureSchema(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return nil
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	s.ready = true
	return nil
}

// Ready reports whether EnsureSchema has succeeded.
func (s *Store) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *Store) connect(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse is not reachable (start it with `scripts/clickhouse.sh start`, or pass --clickhouse): %w", err)
	}
	sv, err := s.conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("clickhouse: read server version: %w", err)
	}
	s.version = Version{Major: sv.Version.Major, Minor: sv.Version.Minor, Patch: sv.Version.Patch}
	s.features = FeaturesOf(s.version)
	// Create the database only when missing: on a cluster that DDL needs
	// ZooKeeper, and a restart while ZooKeeper is down should still find
	// the schema it has and say why writes fail.
	var exists uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", s.db).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", s.db, err)
	}
	if exists == 0 {
		if err := s.ddl(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db+s.onCluster()); err != nil {
			return fmt.Errorf("create database %s: %w", s.db, err)
		}
	}
	s.logger.Info("clickhouse connected", "server", s.version.String(), "database", s.db, "cluster", s.cluster, "features", s.features.String())
	return nil
}

// onCluster is the ON CLUSTER clause of DDL, or nothing on one server.
func (s *Store) onCluster() string {
	if s.cluster == "" {
		return ""
	}
	return " ON CLUSTER " + s.cluster
}

// ddl runs a schema statement. On a cluster, servers that are down do not
// fail it: ClickHouse answers TIMEOUT_EXCEEDED at once when the servers it
// still waits for are not connected to ZooKeeper, and keeps the statement
// queued there; each server runs the queue in order when it is back.
func (s *Store) ddl(ctx context.Context, sql string) error {
	err := s.conn.Exec(ctx, sql)
	var ex *clickhouse.Exception
	if s.cluster != "" && errors.As(err, &ex) && ex.Code == codeTimeoutExceeded {
		stmt, _, _ := strings.Cut(sql, "\n")
		s.logger.Warn("clickhouse cluster: some servers have not applied a schema change yet; it stays queued for them in ZooKeeper",
			"statement", stmt, "err", strings.TrimSpace(ex.Message))
		return nil
	}
	return err
}

// parseDSN splits the database out of the DSN: the connection itself uses
// "default" so that the database can be created before it is used.
func parseDSN(dsn string) (string, *clickhouse.Options, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme != "clickhouse" || u.Host == "" {
		return "", nil, fmt.Errorf("--clickhouse %q: want clickhouse://host:port/database", dsn)
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "meshlens"
	}
	if !identRE.MatchString(db) {
		return "", nil, fmt.Errorf("--clickhouse %q: database name %q must match %s", dsn, db, identRE)
	}
	u.Path = "/default"
	q := u.Query()
	if q.Get("compress") == "" {
		q.Set("compress", "lz4")
	}
	u.RawQuery = q.Encode()
	opts, err := clickhouse.ParseDSN(u.String())
	if err != nil {
		return "", nil, fmt.Errorf("--clickhouse %q: %w", dsn, err)
	}
	opts.DialTimeout = 5 * time.Second
	opts.MaxOpenConns = 8
	opts.MaxIdleConns = 4
	opts.ConnMaxLifetime = 10 * time.Minute
	return db, opts, nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// Close releases the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Conn is the connection, for readers in the query package. A read whose
// pooled connection turns out to be broken is tried once more.
func (s *Store) Conn() driver.Conn { return readRetrying{s.conn} }

// readRetrying retries a read once when its connection was broken before the
// server answered: the server was restarted, or killed, since the connection
// was pooled. The retry dials again, and with several servers in the DSN
// (a cluster) moves on to the next live one. Writes are retried by their
// callers, which know whether the rows landed.
type readRetrying struct{ driver.Conn }

// brokenConnection reports whether err is a connection that failed, as
// opposed to an answer of the server or the caller giving up.
func brokenConnection(ctx context.Context, err error) bool {
	var ex *clickhouse.Exception
	return err != nil && ctx.Err() == nil && !errors.As(err, &ex) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

func (c readRetrying) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	rows, err := c.Conn.Query(ctx, query, args...)
	if brokenConnection(ctx, err) {
		return c.Conn.Query(ctx, query, args...)
	}
	return rows, err
}

func (c readRetrying) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	row := c.Conn.QueryRow(ctx, query, args...)
	if brokenConnection(ctx, row.Err()) {
		return c.Conn.QueryRow(ctx, query, args...)
	}
	return row
}

func (c readRetrying) Select(ctx context.Context, dest any, query string, args ...any) error {
	err := c.Conn.Select(ctx, dest, query, args...)
	if brokenConnection(ctx, err) {
		return c.Conn.Select(ctx, dest, query, args...)
	}
	return err
}

// Database is the database the tables live in.
func (s *Store) Database() string { return s.db }

// Version is the server version detected at connect time.
func (s *Store) Version() Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Features are the server capabilities the schema and queries may use.
func (s *Store) Features() Features {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.features
}

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Cluster is the ClickHouse cluster's name, or empty for one server.
func (s *Store) Cluster() string { return s.cluster }

// Table returns the qualified name of a meshlens table: on a cluster, the
// Distributed table that reads and writes every shard.
func (s *Store) Table(name string) string { return s.db + "." + name }

// LocalTable returns the qualified name of the table that holds one server's
// rows: on a cluster, TABLE_local (the server's replica of its shard); on one
// server, the table itself.
func (s *Store) LocalTable(name string) string {
	if s.cluster == "" || name == tableMigrations {
		return s.db + "." + name
	}
	return s.db + "." + name + localSuffix
}

// localSuffix names the tables that hold each server's rows on a cluster.
const localSuffix = "_local"

// WriteFailure reports the oldest insert that failed and has not succeeded
// since (nil when writes succeed): /readyz says why ingest is queued.
func (s *Store) WriteFailure() (since time.Time, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for _, f := range s.failing {
		if err == nil || f.since.Before(since) {
			since, err = f.since, f.err
		}
	}
	return since, err
}

func (s *Store) noteWrite(table string, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err == nil {
		delete(s.failing, table)
	} else if _, ok := s.failing[table]; !ok {
		s.failing[table] = writeFailure{since: time.Now(), err: err}
	}
}

// ClickHouse error codes meshlens tells apart.
const (
	codeCannotReadFromStream  = 23
	codeCannotWriteToStream   = 24
	codeReadAfterEOF          = 32
	codeCannotReadAllData     = 33
	codeUnknownTable          = 60
	codeUnknownDatabase       = 81
	codeTimeoutExceeded       = 159
	codeTooManyQueries        = 202
	codeNoFreeConnection      = 203
	codeSocketTimeout         = 209
	codeNetworkError          = 210
	codeNoZooKeeper           = 225
	codeTableIsReadOnly       = 242
	codeTooManyParts          = 252
	codeAllConnectionsFailed  = 279
	codeTooFewLiveReplicas    = 285
	codeUnknownStatusOfInsert = 319
	codeKeeperException       = 999
	codePocoException         = 1000 // network errors between servers, among others
)

// transient are the server's answers that mean "not now" rather than "not
// this data": a shard or replica down behind a Distributed table (or its
// connection broken mid-write), ZooKeeper gone (replicated tables turn
// read-only), a server overloaded, or a table not there yet (ON CLUSTER DDL
// still queued for this server).
var transient = map[int32]bool{
	codeCannotReadFromStream: true, codeCannotWriteToStream: true, codeReadAfterEOF: true, codeCannotReadAllData: true,
	codePocoException: true,
	codeUnknownTable:  true, codeUnknownDatabase: true, codeTimeoutExceeded: true,
	codeTooManyQueries: true, codeNoFreeConnection: true, codeSocketTimeout: true, codeNetworkError: true,
	codeNoZooKeeper: true, codeTableIsReadOnly: true, codeTooManyParts: true, codeAllConnectionsFailed: true,
	codeTooFewLiveReplicas: true, codeUnknownStatusOfInsert: true, codeKeeperException: true,
}

// IsUnavailable reports whether err means the server could not be reached,
// answered too late or cannot take writes for now, as opposed to rejecting
// what was sent (the server refused the rows, or they could not be encoded
// for the table's columns): a rejection is not fixed by retrying.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var rej *rejectedError
	if errors.As(err, &rej) {
		return false
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return true
	}
	return transient[ex.Code]
}
