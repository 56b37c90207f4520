package config

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// hugeBadInputs are inputs of about a million broken objects, within
// MaxDocumentBytes: a JSON array of empty objects, and YAML documents that
// each lack everything.
func hugeBadInputs() []struct {
	name    string
	data    []byte
	objects int
} {
	const n = 1_000_000
	var arr bytes.Buffer
	arr.WriteByte('[')
	for i := range n {
		if i > 0 {
			arr.WriteByte(',')
		}
		arr.WriteString("{}")
	}
	arr.WriteByte(']')
	const docs = 100_000
	return []struct {
		name    string
		data    []byte
		objects int
	}{
		{"JSON array of 1M {}", arr.Bytes(), n},
		{"1M YAML documents {}", bytes.Repeat([]byte("--- {}\n"), n), n},
		{"100k YAML documents of an unknown kind", bytes.Repeat([]byte("kind: x\n---\n"), docs), docs},
	}
}

// peakHeap runs fn and returns how far the heap grew above where it was
// before, sampled every few milliseconds while fn runs.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			peak = max(peak, m.HeapAlloc)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapAlloc)
	if peak < base {
		return 0
	}
	return peak - base
}

// A file of a million broken objects is answered with the first
// MaxReportedErrors errors and the right count, in bounded memory and
// time: not a list of every error, which would be far larger than the file.
func TestHugeBadInputGivesFirstErrorsAndCount(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a million objects")
	}
	k := testKinds(t)
	for _, in := range hugeBadInputs() {
		t.Run(in.name, func(t *testing.T) {
			var err error
			start := time.Now()
			grew := peakHeap(func() { _, err = k.Parse(in.data) })
			took := time.Since(start)
			var tm *TooManyErrors
			if !errors.As(err, &tm) {
				t.Fatalf("error %T, want *TooManyErrors", err)
			}
			// Every object lacks metadata, and a known kind.
			if want := 2 * in.objects; tm.Total != want || ErrorCount(err) != want {
				t.Fatalf("count %d, want %d", tm.Total, want)
			}
			if len(tm.First) != MaxReportedErrors || !strings.HasPrefix(tm.First[0].Object, "document ") {
				t.Fatalf("first errors: %d, starting %v", len(tm.First), tm.First[0])
			}
			var fe FieldErrors
			if !errors.As(err, &fe) || len(fe) != MaxReportedErrors {
				t.Fatalf("errors.As FieldErrors gives %d errors, want the first %d", len(fe), MaxReportedErrors)
			}
			if !strings.Contains(err.Error(), "... and ") {
				t.Fatalf("message does not say how many more: %.200s", err.Error())
			}
			// The inputs are 1 to 7 MB; a list of every error would take
			// hundreds.
			const bound = 64 << 20
			t.Logf("%d bytes, %d errors: heap grew by at most %d MiB, %v", len(in.data), tm.Total, grew>>20, took)
			if grew > bound {
				t.Fatalf("heap grew by %d MiB parsing %d bytes, want under %d MiB", grew>>20, len(in.data), bound>>20)
			}
			// How long it took is logged, not asserted: timing belongs in
			// benchmarks, and a machine running other work takes longer.
		})
	}
}
