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
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDSN is where meshlens looks for ClickHouse unless told otherwise.
const DefaultDSN = "clickhouse://127.0.0.1:9000/meshlens"

// Store is a connection to the meshlens database.
type Store struct {
	conn   driver.Conn
	db     string
	logger *slog.Logger

	mu       sync.Mutex
	ready    bool // database created and schema migrated
	version  Version
	features Features
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// New prepares a connection to the ClickHouse named by dsn
// (clickhouse://host:port/database) without contacting it: meshlens starts,
// and queues what it receives, even while ClickHouse is down. EnsureSchema
// makes it usable.
func New(dsn string, logger *slog.Logger) (*Store, error) {
	db, opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", redact(dsn), err)
	}
	return &Store{conn: conn, db: db, logger: logger}, nil
}

// Open is New followed by EnsureSchema.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	s, err := New(dsn, logger)
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
func Connect(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	s, err := New(dsn, logger)
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
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
		return fmt.Errorf("create database %s: %w", s.db, err)
	}
	s.logger.Info("clickhouse connected", "server", s.version.String(), "database", s.db, "features", s.features.String())
	return nil
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
