// Package store owns meshlens' ClickHouse: the connection, server-version
// detection, the schema and its idempotent migration, batch inserts of mesh
// request records, spans and metric points, and retention by dropping whole
// daily partitions. The collector writes through it and the query API reads
// through it.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDSN is where meshlens looks for ClickHouse unless told otherwise.
const DefaultDSN = "clickhouse://127.0.0.1:9000/meshlens"

// Store is a connection to the meshlens database.
type Store struct {
	conn     driver.Conn
	db       string
	version  Version
	features Features
	logger   *slog.Logger
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Open connects to the ClickHouse named by dsn (clickhouse://host:port/database),
// creating the database if needed, detects the server version, and migrates
// the schema. It fails with a message that says what to check when the server
// cannot be reached.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	s, err := Connect(ctx, dsn, logger)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect is Open without the migration.
func Connect(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	db, opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", redact(dsn), err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s is not reachable (start it with `make clickhouse` or pass --clickhouse): %w", redact(dsn), err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: read server version: %w", redact(dsn), err)
	}
	v := Version{Major: sv.Version.Major, Minor: sv.Version.Minor, Patch: sv.Version.Patch}
	s := &Store{conn: conn, db: db, version: v, features: FeaturesOf(v), logger: logger}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		conn.Close()
		return nil, fmt.Errorf("create database %s: %w", db, err)
	}
	logger.Info("clickhouse connected", "server", v.String(), "database", db, "features", s.features.String())
	return s, nil
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

// Conn is the underlying connection, for readers in the query package.
func (s *Store) Conn() driver.Conn { return s.conn }

// Database is the database the tables live in.
func (s *Store) Database() string { return s.db }

// Version is the server version detected at connect time.
func (s *Store) Version() Version { return s.version }

// Features are the server capabilities the schema and queries may use.
func (s *Store) Features() Features { return s.features }

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Table returns the qualified name of a meshlens table.
func (s *Store) Table(name string) string { return s.db + "." + name }

// IsUnavailable reports whether err means the server could not be reached or
// answered too late, as opposed to rejecting what was sent.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ex *clickhouse.Exception
	return !errors.As(err, &ex)
}
