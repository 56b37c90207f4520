// Package chcluster gives tests a real ClickHouse cluster: the one of
// scripts/clickhouse-cluster.sh (ZooKeeper and four ClickHouse servers on
// loopback, 2 shards × 2 replicas, cluster "meshlens"), started and stopped
// through that script so that tests and users run the same thing.
package chcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// EnvDSN names the environment variable with the DSN of a running cluster
// named Name (every server, clickhouse://h1:p1,h2:p2,.../): `make test` starts
// the script's cluster and sets it. Unset, the tests start a cluster of their
// own.
const EnvDSN = "MESHLENS_TEST_CLICKHOUSE_CLUSTER"

// Name is the cluster's name in the servers' remote_servers.
const Name = "meshlens"

// Node is one ClickHouse server of the cluster.
type Node struct {
	Shard, Replica int
	Addr           string // host:port, native protocol
}

func (n Node) String() string {
	return fmt.Sprintf("shard %d replica %d (%s)", n.Shard, n.Replica, n.Addr)
}

// Process is the script's name of the node's server process (ch1..ch4).
func (n Node) Process() string { return fmt.Sprintf("ch%d", (n.Shard-1)*2+n.Replica) }

// Cluster is a running cluster.
type Cluster struct {
	Name  string
	dsn   string
	nodes []Node
	dir   string // the script's directory for a cluster of the tests' own; "" for one given by EnvDSN
	port  int
	root  string
}

// DSN is a DSN for database db naming every server, so that a client fails
// over to the next when one is down.
func (c *Cluster) DSN(db string) string {
	u, _ := url.Parse(c.dsn)
	u.Path = "/" + db
	return u.String()
}

// Nodes are the servers, by shard then replica.
func (c *Cluster) Nodes() []Node { return c.nodes }

// Owned reports whether the tests started this cluster and so may stop and
// kill its processes.
func (c *Cluster) Owned() bool { return c.dir != "" }

// Kill sends SIGKILL to one process of a cluster of the tests' own: a node's
// server (Node.Process) or "zookeeper". Restore brings it back.
func (c *Cluster) Kill(process string) error {
	if !c.Owned() {
		return errors.New("chcluster: only a cluster the tests started may be killed")
	}
	_, err := c.script(context.Background(), "kill", process)
	return err
}

// Restore starts whatever process of the cluster is not running.
func (c *Cluster) Restore(ctx context.Context) error {
	if !c.Owned() {
		return nil
	}
	_, err := c.script(ctx, "start")
	return err
}

// Stop stops a cluster of the tests' own and removes its directory.
func (c *Cluster) Stop() {
	if !c.Owned() {
		return
	}
	if _, err := c.script(context.Background(), "stop"); err == nil {
		_ = os.RemoveAll(c.dir)
	}
}

// Counts returns SELECT count() FROM table on each server (table qualified
// with its database, e.g. the local table of a shard's replica).
func (c *Cluster) Counts(ctx context.Context, table string) (map[Node]uint64, error) {
	out := map[Node]uint64{}
	for _, n := range c.nodes {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{n.Addr}, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		var v uint64
		err = conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&v)
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("count %s on %s: %w", table, n, err)
		}
		out[n] = v
	}
	return out, nil
}

func (c *Cluster) script(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "scripts", "clickhouse-cluster.sh"), args...)
	cmd.Env = append(os.Environ(), "CLICKHOUSE_CLUSTER_DIR="+c.dir, "CLICKHOUSE_CLUSTER_PORT="+strconv.Itoa(c.port))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/clickhouse-cluster.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Start starts a cluster of the caller's own through the script, on free
// ports, with its directory under .run/clickhouse-cluster-tests/. Clusters
// left there by test processes that died are stopped first.
func Start(ctx context.Context) (*Cluster, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	parent := filepath.Join(root, ".run", "clickhouse-cluster-tests")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return nil, err
	}
	reapOrphans(ctx, root, parent)
	dir, err := os.MkdirTemp(parent, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: Name, dir: dir, port: freeBase(), root: root}
	dsn, err := c.script(ctx, "start")
	if err != nil {
		c.Stop()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	c.dsn = dsn
	if err := c.discover(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// FromDSN describes a running cluster named Name that the tests do not own.
func FromDSN(ctx context.Context, dsn string) (*Cluster, error) {
	c := &Cluster{Name: Name, dsn: dsn}
	return c, c.discover(ctx)
}

// discover reads the servers from system.clusters.
func (c *Cluster) discover(ctx context.Context) error {
	opts, err := clickhouse.ParseDSN(c.DSN("default"))
	if err != nil {
		return fmt.Errorf("chcluster: %q: %w", c.dsn, err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT shard_num, replica_num, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", c.Name)
	if err != nil {
		return fmt.Errorf("chcluster: read system.clusters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			shard, replica uint32
			host           string
			port           uint16
		)
		if err := rows.Scan(&shard, &replica, &host, &port); err != nil {
			return err
		}
		c.nodes = append(c.nodes, Node{Shard: int(shard), Replica: int(replica), Addr: net.JoinHostPort(host, strconv.Itoa(int(port)))})
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(c.nodes) == 0 {
		return fmt.Errorf("chcluster: the servers of %s have no cluster named %q", c.dsn, c.Name)
	}
	return nil
}

// freeBase picks a base port whose block (see the script: BASE..+3, +10..+13,
// +20..+23, +80) is free now.
func freeBase() int {
	offsets := []int{0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23, 80}
	for {
		base := 20000 + 100*rand.IntN(100)
		free := true
		for _, o := range offsets {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+o))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
}

// reapOrphans stops the clusters of test processes that are gone (killed by
// a test timeout, say) and removes their directories.
func reapOrphans(ctx context.Context, root, parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pidText, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		c := &Cluster{dir: filepath.Join(parent, e.Name()), root: root}
		c.Stop()
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "clickhouse-cluster.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chcluster: scripts/clickhouse-cluster.sh not found above the working directory")
		}
		dir = parent
	}
}

var (
	mainRunning bool
	sharedOnce  sync.Once
	shared      *Cluster
	sharedErr   error
)

// Shared returns one cluster per test binary: the one EnvDSN names, else one
// started on first use and stopped by Main. Tests share it through databases
// of their own; tests that kill servers start their own with Start.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			shared, sharedErr = FromDSN(ctx, dsn)
			return
		}
		if !mainRunning {
			sharedErr = fmt.Errorf("%s is unset and this package's TestMain does not call chcluster.Main, which stops the cluster the tests start", EnvDSN)
			return
		}
		shared, sharedErr = Start(ctx)
	})
	if sharedErr != nil {
		t.Fatalf("clickhouse cluster: %v", sharedErr)
	}
	return shared
}

// Use returns the cluster EnvDSN names, else starts one for this test alone
// and stops it when the test ends: for packages whose TestMain does not call
// Main.
func Use(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		c, err := FromDSN(ctx, dsn)
		if err != nil {
			t.Fatalf("clickhouse cluster: %v", err)
		}
		return c
	}
	c, err := Start(ctx)
	if err != nil {
		t.Fatalf("clickhouse cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Main runs the tests and stops the shared cluster if they started it:
// func TestMain(m *testing.M) { os.Exit(chcluster.Main(m)) }.
func Main(m *testing.M) int {
	mainRunning = true
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}
