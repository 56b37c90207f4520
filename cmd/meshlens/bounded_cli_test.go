package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file of a million broken objects: `meshlens validate` and `meshlens
// apply` print the first 100 errors and how many more there are, not two
// million lines.
func TestCLIHugeBadFileGivesFirstErrorsAndCount(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a million objects")
	}
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	var arr bytes.Buffer
	arr.WriteByte('[')
	for i := range 1_000_000 {
		if i > 0 {
			arr.WriteByte(',')
		}
		arr.WriteString("{}")
	}
	arr.WriteByte(']')
	f := filepath.Join(t.TempDir(), "huge.json")
	if err := os.WriteFile(f, arr.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(name, out string, err error) {
		t.Helper()
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), "2000000 errors") {
			t.Fatalf("%s: err = %v, want errInvalid with the total", name, err)
		}
		if n := strings.Count(out, "\nError ") + boolInt(strings.HasPrefix(out, "Error ")); n != 100 {
			t.Fatalf("%s printed %d errors, want 100", name, n)
		}
		if !strings.Contains(out, "... and 1999900 more errors") {
			t.Fatalf("%s does not say how many more:\n%.500s", name, out)
		}
	}
	out, _, err := run(t, runValidate, "-f", f)
	check("validate", out, err)

	url, dataDir, store := configServer(t)
	_, stderr, err := run(t, runApply, "-f", f, "--server", url, "--data-dir", dataDir)
	check("apply", stderr, err)
	if store.Snapshot().Version != 0 {
		t.Fatal("a refused apply changed the config")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
