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
	name := fmt.Sprintf("t_%s_%d_%d", sanitize(t.Name()), os.Getpid(), seq.Add(1))
	if len(name) > 60 {
		name = fmt.Sprintf("t_%d_%d_%d", time.Now().UnixNano(), os.Getpid(), seq.Add(1))
	}
	dsn := strings.TrimRight(strings.SplitN(base, "?", 2)[0], "/")
	if i := strings.Index(dsn[len("clickhouse://"):], "/"); i >= 0 {
		dsn = dsn[:len("clickhouse://")+i]
	}
	dsn += "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := store.Connect(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return // the server is gone; nothing to clean
		}
		defer s.Close()
		_ = s.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	return dsn
}

// Open returns a migrated store on a fresh database.
func Open(t testing.TB) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := store.Open(ctx, DSN(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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
