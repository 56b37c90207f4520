package config

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// sharedReplica is one replica's config store sharing through a ClickHouse
// database with the others.
type sharedReplica struct {
	store   *Store
	sharing *Sharing
	stop    context.CancelFunc
	done    chan struct{}
}

// startShared opens the config store in dir and shares it through st as
// replica name, reading the log every 100 ms, until stopped or the test
// ends.
func startShared(t *testing.T, dir, name string, st *store.Store) *sharedReplica {
	t.Helper()
	cs := openStore(t, dir)
	sh, err := NewSharing(cs, st, SharingOptions{DataDir: dir, Replica: name, Interval: 100 * time.Millisecond}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &sharedReplica{store: cs, sharing: sh, stop: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); _ = sh.Run(ctx) }()
	t.Cleanup(r.Stop)
	return r
}

func (r *sharedReplica) Stop() { r.stop(); <-r.done }

func routeVS(name string, v1 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %d}
    - {destination: {host: reviews, subset: v2}, weight: %d}
`, name, v1, 100-v1)
}

func applyYAML(t *testing.T, s *Store, doc string) {
	t.Helper()
	objs, err := s.Kinds().Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Apply(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
}

// v1Weight is the weight of subset v1 in VirtualService shop/name, or -1
// when the store lacks it.
func v1Weight(s *Store, name string) int {
	o := s.Snapshot().Get("VirtualService", "shop", name)
	if o == nil {
		return -1
	}
	return int(o.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[0].GetWeight())
}

func waitWeight(t *testing.T, what string, s *Store, name string, want int) {
	t.Helper()
	meshtest.Eventually(t, 15*time.Second, what, func() error {
		if got := v1Weight(s, name); got != want {
			return fmt.Errorf("VirtualService %s: v1 weight %d, want %d (-1: absent)", name, got, want)
		}
		return nil
	})
}

// Three replicas' config stores sharing one ClickHouse database: what is
// applied or deleted through the API on any of them is served by all; of
// two conflicting applies on two replicas the later one wins on every
// replica; a replica stopped while config changes takes the changes when it
// starts again; a replica that cannot reach ClickHouse applies and serves
// its change, says so, and shares it once ClickHouse is back.
func TestSharedConfigIsEveryReplicasConfig(t *testing.T) {
	st := storetest.Open(t)
	// Replica 0 reaches ClickHouse through a proxy the test takes down.
	host := strings.SplitN(os.Getenv(storetest.EnvDSN), "/", 4)[2] // clickhouse://HOST:PORT/
	proxy := meshtest.StartFaultProxy(t, host)
	st0, err := store.Open(context.Background(), "clickhouse://"+proxy.Addr()+"/"+st.Database(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st0.Close() })
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	rs := []*sharedReplica{
		startShared(t, dirs[0], "10.0.0.1:8080", st0),
		startShared(t, dirs[1], "10.0.0.2:8080", storetest.Reopen(t, st)),
		startShared(t, dirs[2], "10.0.0.3:8080", storetest.Reopen(t, st)),
	}

	applyYAML(t, rs[1].store, routeVS("reviews", 90))
	for i, r := range rs {
		waitWeight(t, fmt.Sprintf("replica %d serves the VirtualService applied on replica 1", i), r.store, "reviews", 90)
	}
	if origin := rs[2].store.Origin("VirtualService", "shop", "reviews"); origin != SourceAPI {
		t.Fatalf("replica 2 holds it as %q: the API must be able to change and delete it there", origin)
	}

	// Conflicting applies on two replicas before either has seen the
	// other's: the later one wins everywhere, the earlier one's replica
	// included.
	applyYAML(t, rs[0].store, routeVS("reviews", 70))
	applyYAML(t, rs[2].store, routeVS("reviews", 20))
	for i, r := range rs {
		waitWeight(t, fmt.Sprintf("replica %d serves the later of two conflicting applies", i), r.store, "reviews", 20)
	}

	// A delete on one replica is a delete on all.
	if _, _, err := rs[0].store.Delete(context.Background(), "VirtualService", "shop", "reviews"); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		waitWeight(t, fmt.Sprintf("replica %d no longer serves the VirtualService deleted on replica 0", i), r.store, "reviews", -1)
	}

	// Replica 2 stopped while an object is created and another one created
	// and deleted: started again on its data dir, it catches up.
	applyYAML(t, rs[0].store, routeVS("ratings", 50))
	waitWeight(t, "replica 1 serves ratings", rs[1].store, "ratings", 50)
	waitWeight(t, "replica 2 serves ratings before it stops", rs[2].store, "ratings", 50)
	rs[2].Stop()
	applyYAML(t, rs[1].store, routeVS("details", 60))
	if _, _, err := rs[1].store.Delete(context.Background(), "VirtualService", "shop", "ratings"); err != nil {
		t.Fatal(err)
	}
	if v1Weight(rs[2].store, "details") != -1 || v1Weight(rs[2].store, "ratings") != 50 {
		t.Fatal("the stopped replica changed")
	}
	rs[2] = startShared(t, dirs[2], "10.0.0.3:8080", storetest.Reopen(t, st))
	waitWeight(t, "restarted replica 2 takes details", rs[2].store, "details", 60)
	waitWeight(t, "restarted replica 2 drops ratings", rs[2].store, "ratings", -1)

	// Replica 0 without ClickHouse: its change is applied and served there,
	// queued on disk, and /readyz's check says so; the others get it once
	// ClickHouse is back.
	proxy.SetDown(true)
	meshtest.Eventually(t, 15*time.Second, "replica 0 notices the shared log is unreachable", func() error {
		if h := rs[0].sharing.Health(); !strings.Contains(h, "unreachable") {
			return fmt.Errorf("health %q", h)
		}
		return nil
	})
	applyYAML(t, rs[0].store, routeVS("details", 10))
	if got := v1Weight(rs[0].store, "details"); got != 10 {
		t.Fatalf("replica 0 serves details v1 %d while ClickHouse is down, want its own change (10)", got)
	}
	if h := rs[0].sharing.Health(); !strings.Contains(h, "1 changes of this replica wait") {
		t.Fatalf("health while down: %q", h)
	}
	if _, err := os.Stat(dirs[0] + "/" + OutboxFile); err != nil {
		t.Fatalf("the queued change is not on disk: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := v1Weight(rs[1].store, "details"); got != 60 {
		t.Fatalf("replica 1 has details v1 %d while replica 0 cannot share, want 60", got)
	}
	proxy.SetDown(false)
	for i, r := range rs {
		waitWeight(t, fmt.Sprintf("replica %d serves the change replica 0 queued", i), r.store, "details", 10)
	}
	meshtest.Eventually(t, 15*time.Second, "replica 0's health is clear again", func() error {
		if h := rs[0].sharing.Health(); h != "" {
			return fmt.Errorf("health %q", h)
		}
		return nil
	})
	if _, err := os.Stat(dirs[0] + "/" + OutboxFile); !os.IsNotExist(err) {
		t.Fatalf("the queue file is still there once shared: %v", err)
	}
}

// An object the config dir of a replica defines stays the dir's there when
// another replica applies it through the API; once the file no longer
// defines it, that replica serves the shared one (taken by its next full
// read of the log).
func TestSharedConfigYieldsToTheConfigDirUntilItLetsGo(t *testing.T) {
	st := storetest.Open(t)
	a := startShared(t, t.TempDir(), "10.0.0.1:8080", st)
	dataB, confB := t.TempDir(), t.TempDir()
	csB := openStore(t, dataB)
	file := confB + "/reviews.yaml"
	if err := os.WriteFile(file, []byte(routeVS("reviews", 50)), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := NewDirSource(confB, csB, testLogger())
	if _, _, err := dir.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	shB, err := NewSharing(csB, storetest.Reopen(t, st), SharingOptions{DataDir: dataB, Replica: "10.0.0.2:8080", Interval: 100 * time.Millisecond}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	shB.fullEvery = 300 * time.Millisecond
	meshtest.Background(t, shB.Run)

	applyYAML(t, a.store, routeVS("reviews", 90)+"---\n"+routeVS("ratings", 80))
	waitWeight(t, "replica B takes ratings", csB, "ratings", 80)
	time.Sleep(time.Second) // several reads, full ones included
	if got, origin := v1Weight(csB, "reviews"), csB.Origin("VirtualService", "shop", "reviews"); got != 50 || origin != "dir:reviews.yaml" {
		t.Fatalf("replica B serves reviews v1 %d from %q, want its config dir's 50", got, origin)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dir.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitWeight(t, "replica B serves the shared reviews once its dir lets go", csB, "reviews", 90)
	if origin := csB.Origin("VirtualService", "shop", "reviews"); origin != SourceAPI {
		t.Fatalf("replica B holds reviews as %q", origin)
	}
}
