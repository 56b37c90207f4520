package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDirSourceOwnsItsObjects(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	dir := t.TempDir()
	// The API applies "a" first; the dir then defines "a" and "b".
	if _, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, "a"))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), fmt.Sprintf(seYAML, "a"))
	writeFile(t, filepath.Join(dir, "sub", "b.yml"), fmt.Sprintf(seYAML, "b"))
	writeFile(t, filepath.Join(dir, "README.md"), "not config")
	d := NewDirSource(dir, s, testLogger())
	if _, _, err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Origin("ServiceEntry", "shop", "a"); got != "dir:a.yaml" {
		t.Fatalf("origin of a = %q, want dir:a.yaml", got)
	}
	if got := s.Origin("ServiceEntry", "shop", "b"); got != "dir:"+filepath.Join("sub", "b.yml") {
		t.Fatalf("origin of b = %q", got)
	}
	// The API may neither change nor delete what the dir owns.
	_, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, "b")))
	var fe FieldErrors
	if !errors.As(err, &fe) || !strings.Contains(fe[0].Message, "owned by the config dir") {
		t.Fatalf("API apply of a dir object: err = %v", err)
	}
	if _, _, err := s.Delete(ctx, "ServiceEntry", "shop", "b"); !errors.Is(err, ErrOwned) {
		t.Fatalf("API delete of a dir object: err = %v, want ErrOwned", err)
	}
	// An API-only object is untouched by dir syncs.
	if _, _, err := s.Apply(ctx, parse(t, s, fmt.Sprintf(seYAML, "c"))); err != nil {
		t.Fatal(err)
	}
	// Removing a file removes its objects.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	sn, _, err := d.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Get("ServiceEntry", "shop", "a") != nil || sn.Get("ServiceEntry", "shop", "b") == nil || sn.Get("ServiceEntry", "shop", "c") == nil {
		t.Fatalf("after removing a.yaml: got %v", keys(sn))
	}
	// Re-reading an unchanged dir publishes nothing new.
	again, _, err := d.Sync(ctx)
	if err != nil || again != sn {
		t.Fatalf("unchanged dir: err %v, version %d -> %d", err, sn.Version, again.Version)
	}
}

func keys(sn *Snapshot) []string {
	var out []string
	for _, o := range sn.Objects {
		out = append(out, o.Key())
	}
	return out
}

func TestDirSourceRefusesInvalidFileNamingFileObjectField(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), fmt.Sprintf(seYAML, "a"))
	d := NewDirSource(dir, s, testLogger())
	good, _, err := d.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "b.yaml"), strings.Replace(fmt.Sprintf(seYAML, "b"), "number: 80", "number: 0", 1))
	_, _, err = d.Sync(ctx)
	var de *DirError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DirError", err)
	}
	e := de.Errors[0]
	if e.File != "b.yaml" || e.Object != "ServiceEntry/shop/b" || e.Field != "ports[0].number" {
		t.Fatalf("error %+v does not name b.yaml, ServiceEntry/shop/b, ports[0].number", e)
	}
	if s.Snapshot() != good {
		t.Fatal("invalid dir changed the running config")
	}
	// A parse error names the file too.
	writeFile(t, filepath.Join(dir, "b.yaml"), "kind: [unclosed\n")
	_, _, err = d.Sync(ctx)
	if !errors.As(err, &de) || de.Errors[0].File != "b.yaml" {
		t.Fatalf("parse error %v does not name b.yaml", err)
	}
}

// Run follows the directory through fsnotify: a new file is applied, an
// invalid edit is refused, a fixed file is applied again.
func TestDirSourceRunFollowsChanges(t *testing.T) {
	s := openStore(t, t.TempDir())
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), fmt.Sprintf(seYAML, "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := NewDirSource(dir, s, testLogger())
	d.debounce = 20 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	ch := s.Watch(ctx)
	waitFor := func(what string, ok func(*Snapshot) bool) *Snapshot {
		t.Helper()
		for {
			select {
			case sn := <-ch:
				if ok(sn) {
					return sn
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("a", func(sn *Snapshot) bool { return sn.Get("ServiceEntry", "shop", "a") != nil })
	writeFile(t, filepath.Join(dir, "new", "b.yaml"), fmt.Sprintf(seYAML, "b"))
	withB := waitFor("b", func(sn *Snapshot) bool { return sn.Get("ServiceEntry", "shop", "b") != nil })

	writeFile(t, filepath.Join(dir, "new", "b.yaml"), "spec: {hosts: []}\n")
	writeFile(t, filepath.Join(dir, "c.yaml"), fmt.Sprintf(seYAML, "c"))
	// The invalid b.yaml blocks c too (the dir is one batch); fixing b
	// applies both.
	writeFile(t, filepath.Join(dir, "new", "b.yaml"), fmt.Sprintf(seYAML, "b"))
	sn := waitFor("c", func(sn *Snapshot) bool { return sn.Get("ServiceEntry", "shop", "c") != nil })
	if sn.Version <= withB.Version {
		t.Fatalf("version did not grow: %d after %d", sn.Version, withB.Version)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A dir change that leaves an object applied through the API with a
// dangling reference is applied, as Istio would, and the warning names the
// API's object.
func TestDirChangeBreakingAPIObjectWarns(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "se.yaml"), fmt.Sprintf(seYAML, "a"))
	d := NewDirSource(dir, s, testLogger())
	if _, _, err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	vs := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\nspec:\n  hosts: [a]\n  http: [{route: [{destination: {host: a}}]}]\n"
	if _, ws, err := s.Apply(ctx, parse(t, s, vs)); err != nil || len(ws) != 0 {
		t.Fatalf("apply: warnings %v, err %v", ws, err)
	}
	if err := os.Remove(filepath.Join(dir, "se.yaml")); err != nil {
		t.Fatal(err)
	}
	sn, ws, err := d.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Get("ServiceEntry", "shop", "a") != nil {
		t.Fatal("the removed file's ServiceEntry is still there")
	}
	if len(ws) != 1 || ws[0].Object != "VirtualService/shop/a" || ws[0].Code != CodeReferencedResourceNotFound || ws[0].Field != "http[0].route[0].destination.host" {
		t.Fatalf("warnings %v, want IST0101 on the API's VirtualService", ws)
	}
}
