package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each file in testdata/invalid is a batch applied on top of the bookinfo
// examples' services, subsets and routes. Its "# want: OBJECT | FIELD |
// MESSAGE" lines list exactly the errors expected: each must match one
// error (message by substring) and no other error may appear.
func TestInvalidConfigIsRefusedWithFieldErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	base := exampleStore(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wants := parseWants(t, data)
			var got FieldErrors
			objs, err := base.Kinds().Parse(data)
			if err == nil {
				before := base.Snapshot()
				_, _, err = base.Apply(context.Background(), objs)
				if err == nil {
					t.Fatalf("batch was accepted")
				}
				if base.Snapshot() != before {
					t.Fatalf("a refused batch changed the snapshot")
				}
			}
			got, ok := err.(FieldErrors)
			if !ok {
				t.Fatalf("error is %T, want FieldErrors: %v", err, err)
			}
			used := make([]bool, len(got))
			for _, w := range wants {
				found := false
				for i, e := range got {
					if !used[i] && e.Object == w.Object && e.Field == w.Field && strings.Contains(e.Message, w.Message) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("missing error %s | %s | %s", w.Object, w.Field, w.Message)
				}
			}
			for i, e := range got {
				if !used[i] {
					t.Errorf("unexpected error %s | %s | %s", e.Object, e.Field, e.Message)
				}
			}
		})
	}
}

func parseWants(t *testing.T, data []byte) []FieldError {
	var wants []FieldError
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "# want: ")
		if !ok {
			continue
		}
		parts := strings.SplitN(rest, "|", 3)
		if len(parts) != 3 {
			t.Fatalf("bad want line %q", line)
		}
		wants = append(wants, FieldError{Object: strings.TrimSpace(parts[0]), Field: strings.TrimSpace(parts[1]), Message: strings.TrimSpace(parts[2])})
	}
	if len(wants) == 0 {
		t.Fatal("file has no # want: lines")
	}
	return wants
}

// exampleStore is a store holding all the Istio examples.
func exampleStore(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, t.TempDir())
	for _, f := range exampleFiles {
		objs, err := s.Kinds().Parse(readExample(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Apply(context.Background(), objs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return s
}
