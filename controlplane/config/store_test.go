package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const seYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: shop}
spec:
  hosts: [%[1]s]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
`

func parse(t *testing.T, s *Store, yaml string) []*Object {
	t.Helper()
	objs, err := s.Kinds().Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// A watcher sees a snapshot only after it is on disk: the state file read
// when a snapshot arrives holds at least that version.
func TestSnapshotIsPersistedBeforePublished(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx)
	if sn := <-ch; sn.Version != 0 {
		t.Fatalf("initial version %d", sn.Version)
	}
	for i := range 5 {
		if _, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, fmt.Sprintf("svc%d", i)))); err != nil {
			t.Fatal(err)
		}
		sn := <-ch
		data, err := os.ReadFile(filepath.Join(dir, StateFile))
		if err != nil {
			t.Fatal(err)
		}
		var p persisted
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatal(err)
		}
		if p.Version < sn.Version || len(p.Objects) < len(sn.Objects) {
			t.Fatalf("published version %d (%d objects) but disk has %d (%d objects)", sn.Version, len(sn.Objects), p.Version, len(p.Objects))
		}
	}
}

// A watcher that does not read never blocks the writer, and when it reads
// it gets the latest snapshot; versions only grow.
func TestWatchIsLatestWinsAndNeverBlocksWriter(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.Watch(ctx)
	var last *Snapshot
	for i := range 20 {
		sn, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, fmt.Sprintf("svc%d", i))))
		if err != nil {
			t.Fatal(err)
		}
		if last != nil && sn.Version <= last.Version {
			t.Fatalf("version went from %d to %d", last.Version, sn.Version)
		}
		last = sn
	}
	if got := <-ch; got != last {
		t.Fatalf("watcher got version %d, want latest %d", got.Version, last.Version)
	}
	cancel()
	for range ch { // closed once ctx ends
	}
}

func TestSubscribeDeliversLatest(t *testing.T) {
	s := openStore(t, t.TempDir())
	got := make(chan uint64, 100)
	stop := s.Subscribe(func(sn *Snapshot) { got <- sn.Version })
	defer stop()
	sn, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "a")))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case v := <-got:
			if v == sn.Version {
				return
			}
		case <-deadline:
			t.Fatal("subscriber never saw the applied version")
		}
	}
}

func TestReapplyingSameConfigKeepsVersion(t *testing.T) {
	s := openStore(t, t.TempDir())
	first, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "a")))
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "a")))
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("identical apply published version %d after %d", again.Version, first.Version)
	}
}

// Deleting an object others refer to is allowed, as in Istio; the
// warnings name what it leaves dangling.
func TestDeleteWarnsAboutBrokenReferences(t *testing.T) {
	s := exampleStore(t)
	ctx := context.Background()
	before := s.Snapshot().Version
	sn, ws, err := s.Delete(ctx, "dr", "bookinfo", "reviews")
	if err != nil {
		t.Fatalf("deleting a used DestinationRule: %v", err)
	}
	if sn.Version != before+1 || sn.Get("DestinationRule", "bookinfo", "reviews") != nil {
		t.Fatalf("delete: version %d (was %d), object still there: %v", sn.Version, before, sn.Get("DestinationRule", "bookinfo", "reviews") != nil)
	}
	if len(ws) == 0 {
		t.Fatal("no warnings for the VirtualService routing to the deleted subsets")
	}
	for _, w := range ws {
		if w.Object != "VirtualService/bookinfo/reviews" || w.Code != CodeReferencedResourceNotFound || !strings.HasSuffix(w.Field, ".subset") {
			t.Errorf("unexpected warning %v", w)
		}
	}
	if _, _, err := s.Delete(ctx, "VirtualService", "bookinfo", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing object: err = %v, want ErrNotFound", err)
	}
	if _, ws, err := s.Delete(ctx, "VirtualService", "bookinfo", "reviews"); err != nil || len(ws) != 0 {
		t.Fatalf("delete of the VirtualService: warnings %v, err %v", ws, err)
	}
}

// When the state file cannot be written, the change is refused and
// nothing is published.
func TestPersistFailureLeavesConfigUnchanged(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "a"))); err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot()
	// A non-empty directory where the state file goes makes the rename fail.
	state := filepath.Join(dir, StateFile)
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "block"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "b")))
	if err == nil {
		t.Fatal("apply succeeded without persisting")
	}
	if s.Snapshot() != before {
		t.Fatal("snapshot changed although persisting failed")
	}
}

func TestOpenRefusesStateWithUnregisteredKind(t *testing.T) {
	dir := t.TempDir()
	state := `{"version": 3, "objects": [{"origin": "api", "object": {"apiVersion": "meshlens.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r", "namespace": "default"}, "spec": {}}}]}`
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testKinds(t), testLogger(), nil)
	if err == nil {
		t.Fatal("Open dropped an object of an unknown kind silently")
	}
}

// An object stored under older rules that fails today's validation keeps
// being served and does not block unrelated changes; a change that makes
// it worse is still refused.
func TestStoredInvalidObjectDoesNotBlockUnrelatedChanges(t *testing.T) {
	dir := t.TempDir()
	vs := `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"old","namespace":"shop"},"spec":{"hosts":["old"],"http":[{"route":[{"destination":{"host":"old"}}]}]}}`
	state := `{"version": 9, "objects": [{"origin": "api", "object": ` + vs + `}]}`
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	if s.Snapshot().Version != 9 || s.Snapshot().Get("VirtualService", "shop", "old") == nil {
		t.Fatal("stored object not loaded")
	}
	sn, _, err := s.Apply(context.Background(), parse(t, s, fmt.Sprintf(seYAML, "unrelated")))
	if err != nil {
		t.Fatalf("unrelated apply blocked: %v", err)
	}
	if sn.Version != 10 {
		t.Fatalf("version %d, want 10", sn.Version)
	}
}

func TestConcurrentAppliesGetDistinctGrowingVersions(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx)
	seen := make(chan uint64)
	go func() {
		var last uint64
		for sn := range ch {
			if sn.Version < last {
				seen <- sn.Version + 1<<62 // report going backwards
				return
			}
			last = sn.Version
		}
		seen <- last
	}()
	const workers, each = 4, 10
	errs := make(chan error, workers)
	batches := make([][][]*Object, workers)
	for w := range workers {
		for i := range each {
			batches[w] = append(batches[w], parse(t, s, fmt.Sprintf(seYAML, fmt.Sprintf("w%d-%d", w, i))))
		}
	}
	for w := range workers {
		go func() {
			for _, batch := range batches[w] {
				_, _, err := s.Apply(ctx, batch)
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sn := s.Snapshot()
	if sn.Version != workers*each || len(sn.Objects) != workers*each {
		t.Fatalf("version %d with %d objects, want %d", sn.Version, len(sn.Objects), workers*each)
	}
	cancel()
	if last := <-seen; last > 1<<62 {
		t.Fatal("a watcher saw the version go backwards")
	}
}

func TestStoreExportsVersionAndChangeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := Open(t.TempDir(), testKinds(t), testLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, "a"))); err != nil {
		t.Fatal(err)
	}
	bad := parse(t, s, strings.Replace(fmt.Sprintf(seYAML, "b"), "number: 80", "number: 0", 1))
	if _, _, err := s.Apply(ctx, bad); err == nil {
		t.Fatal("invalid apply accepted")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"meshlens_config_version":                                 1,
		"meshlens_config_objects":                                 1,
		"meshlens_config_changes_total,result=applied,source=api": 1,
		"meshlens_config_changes_total,result=invalid,source=api": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
}
