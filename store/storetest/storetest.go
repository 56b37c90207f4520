// Package storetest gives tests a real ClickHouse database of their own.
package storetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/chcluster"
	"github.com/meshlens/meshlens/store"
)

// EnvDSN names the environment variable holding the test server's DSN; `make
// test` starts a server and sets it.
const EnvDSN = "MESHLENS_TEST_CLICKHOUSE"

var seq atomic.Uint64

// DSN returns a DSN for a fresh database on the test server, dropped when the
// test ends. The test fails if no server is configured: these tests are the
// point, so they never skip silently.
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		t.Fatalf("%s is not set: run `make test`, or start ClickHouse with scripts/clickhouse.sh and export %s=clickhouse://127.0.0.1:19000/", EnvDSN, EnvDSN)
	}
	name := dbName(t)
	dsn := strings.TrimRight(strings.SplitN(base, "?", 2)[0], "/")
	if i := strings.Index(dsn[len("clickhouse://"):], "/"); i >= 0 {
		dsn = dsn[:len("clickhouse://")+i]
	}
	dsn += "/" + name
	dropAtCleanup(t, dsn, name)
	return dsn
}

// ClusterDSN returns a DSN (naming every server) for a fresh database on the
// test cluster (chcluster.Shared), dropped on every server when the test
// ends, and the options that open a store on it.
func ClusterDSN(t testing.TB) (string, []store.Option) {
	t.Helper()
	c := chcluster.Shared(t)
	name := dbName(t)
	dsn := c.DSN(name)
	opts := []store.Option{store.OnCluster(c.Name)}
	dropAtCleanup(t, dsn, name, opts...)
	return dsn, opts
}

func dbName(t testing.TB) string {
	name := fmt.Sprintf("t_%s_%d_%d", sanitize(t.Name()), os.Getpid(), seq.Add(1))
	if len(name) > 60 {
		name = fmt.Sprintf("t_%d_%d_%d", time.Now().UnixNano(), os.Getpid(), seq.Add(1))
	}
	return name
}

func dropAtCleanup(t testing.TB, dsn, name string, opts ...store.Option) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := store.New(dsn, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
		if err != nil {
			return
		}
		defer s.Close()
		on := ""
		if s.Cluster() != "" {
			on = " ON CLUSTER " + s.Cluster()
		}
		_ = s.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+name+on) // the server may be gone; nothing to clean then
	})
}

// Open returns a migrated store on a fresh database of the test server.
func Open(t testing.TB) *store.Store {
	t.Helper()
	return open(t, DSN(t))
}

// OpenCluster returns a migrated store on a fresh database of the test
// cluster.
func OpenCluster(t testing.TB) *store.Store {
	t.Helper()
	dsn, opts := ClusterDSN(t)
	return open(t, dsn, opts...)
}

func open(t testing.TB, dsn string, opts ...store.Option) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Backend is a ClickHouse deployment a test runs on.
type Backend struct {
	Name string                        // "single" or "cluster"
	Open func(testing.TB) *store.Store // a migrated store on a fresh database
}

// Backends are one server and the cluster: tests of what meshlens stores and
// reads run on both. A package that uses them calls chcluster.Main from its
// TestMain.
func Backends() []Backend {
	return []Backend{{"single", Open}, {"cluster", OpenCluster}}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Reopen returns a second migrated store on s's database, as another meshlens
// replica sharing it would have.
func Reopen(t testing.TB, s *store.Store) *store.Store {
	t.Helper()
	if s.Cluster() != "" {
		c := chcluster.Shared(t)
		return open(t, c.DSN(s.Database()), store.OnCluster(c.Name))
	}
	base := strings.TrimRight(strings.SplitN(os.Getenv(EnvDSN), "?", 2)[0], "/")
	if i := strings.Index(base[min(len(base), len("clickhouse://")):], "/"); i >= 0 {
		base = base[:len("clickhouse://")+i]
	}
	return open(t, base+"/"+s.Database())
}
