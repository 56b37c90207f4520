package spool

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tidwall/wal"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// fullBatch has a row of every kind with every field set, and rows that
// repeat strings (which the format writes once).
func fullBatch() *Batch {
	at := time.Date(2026, 11, 30, 16, 0, 0, 123456789, time.UTC)
	a := mesh.Peer{Namespace: "shop", Service: "cart", Workload: "cart-v2", Version: "v2"}
	b := mesh.Peer{Namespace: "shop", Service: "db", Workload: "db-0", Version: "15"}
	return &Batch{
		Records: []mesh.Record{
			{Time: at, Source: a, Destination: b, Protocol: "http", Method: "GET", Path: "/items?q=é", Authority: "db:8080",
				Code: 503, GRPCStatus: -1, Flags: "UF", Duration: 1500 * time.Microsecond, BytesIn: 10, BytesOut: 1 << 40,
				MTLS: true, TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", Origin: mesh.OriginALS},
			{Time: at.Add(time.Second), Source: a, Destination: b, Protocol: "grpc", Method: "/db.DB/Get", Code: 200, GRPCStatus: 14,
				Flags: "-", Duration: -time.Nanosecond, Origin: mesh.OriginALS},
		},
		Spans: []store.Span{
			{Start: at, TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", ParentSpanID: "00f067aa0ba902b7",
				Name: "GET /items", Kind: "server", Peer: b, Duration: time.Millisecond, StatusCode: "error", StatusMessage: "boom",
				AttrKeys: []string{"http.route", "url.path"}, AttrValues: []string{"/items", "/items"}},
			{Start: at, Name: "GET /items", Kind: "client", Peer: a, StatusCode: "unset"},
		},
		Points: []store.MetricPoint{
			{Time: at, Name: "istio_requests_total", Type: "sum", Unit: "1", Peer: a, Value: 42.5, Count: 7, Sum: -1.25,
				Bounds: []float64{0.5, 1, 2.5}, BucketCounts: []uint64{1, 2, 3, 1}, AttrKeys: []string{"code"}, AttrValues: []string{"200"}},
		},
		Logs: []store.LogRow{
			{Time: at, Severity: "ERROR", Body: "connection refused\nretrying", Peer: b, TraceID: "0af7651916cd43dd8448eb211c80319c",
				SpanID: "b7ad6b7169203331", AttrKeys: []string{"k"}, AttrValues: []string{""}},
			{Severity: "INFO"}, // no time: the zero time comes back
		},
	}
}

func TestBatchRoundTripsEveryField(t *testing.T) {
	want := fullBatch()
	data := encodeBatch(nil, want)
	got, err := decodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
	if legacy := gobOf(t, want); len(data) >= len(legacy) {
		t.Errorf("entry is %d bytes, gob's %d: repeated strings should make it smaller", len(data), len(legacy))
	}
}

func gobOf(t testing.TB, b *Batch) []byte {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEntriesOfAnOlderMeshlensAreStillRead puts a gob entry, as meshlens
// wrote them before this format, in a queue's log: a meshlens upgraded with
// telemetry still queued must write it, not drop it.
func TestEntriesOfAnOlderMeshlensAreStillRead(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old := batchOf(3, "legacy")
	l, err := wal.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(1, gobOf(t, old)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(batchOf(2, "new")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := s.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Batch == nil || got[1].Batch == nil {
		t.Fatalf("Next = %+v; want the old entry and the new one, both decoded", got)
	}
	if !reflect.DeepEqual(got[0].Batch, old) {
		t.Errorf("old entry decoded as %+v, want %+v", got[0].Batch, old)
	}
	if n := len(got[1].Batch.Records); n != 2 || got[1].Batch.Records[1].Destination.Service != "new" {
		t.Errorf("new entry decoded as %+v", got[1].Batch)
	}
}

func TestCorruptEntriesAreRefusedNotTrusted(t *testing.T) {
	good := encodeBatch(nil, fullBatch())
	cases := map[string][]byte{
		"empty":           {},
		"no tag":          {formatTag},
		"future version":  {formatTag, formatVersion + 1, 0, 0, 0, 0},
		"truncated":       good[:len(good)/2],
		"trailing bytes":  append(append([]byte{}, good...), 7),
		"huge count":      {formatTag, formatVersion, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0},
		"dangling ref":    append([]byte{formatTag, formatVersion, 0, 0, 0, 1, 0}, 9),
		"overlong varint": {formatTag, formatVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"string past end": {formatTag, formatVersion, 0, 0, 0, 1, 0, 0, 50, 'x'},
	}
	for name, data := range cases {
		if b, err := decode(data); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", name, b)
		} else if err != nil && !errors.Is(err, errCorrupt) {
			t.Errorf("%s: error %v does not say the entry is corrupt", name, err)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(nil, fullBatch()))
	f.Add(encodeBatch(nil, batchOf(3, "a")))
	f.Add([]byte{formatTag, formatVersion, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBatch(append([]byte(nil), data...))
		if err != nil {
			return
		}
		// What decodes encodes back to something that decodes the same.
		again, err := decodeBatch(encodeBatch(nil, b))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, b) {
			t.Fatalf("re-encoded batch decodes as\n%+v\nwant\n%+v", again, b)
		}
	})
}

// BenchmarkCodec encodes and decodes a queue entry of 2,000 spans and 2,000
// request records in the queue's format and, as the reference in the same
// run, with gob (the format before): the ratio is gob's time over this
// format's.
func BenchmarkCodec(b *testing.B) {
	batch := &Batch{}
	for i := 0; i < 1000; i++ {
		batch.Spans = append(batch.Spans, fullBatch().Spans...)
		batch.Records = append(batch.Records, fullBatch().Records...)
	}
	var format, reference time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := decodeBatch(encodeBatch(nil, batch)); err != nil {
			b.Fatal(err)
		}
		format += time.Since(start)
		start = time.Now()
		if _, err := decodeLegacy(gobOf(b, batch)); err != nil {
			b.Fatal(err)
		}
		reference += time.Since(start)
	}
	b.ReportMetric(float64(reference)/float64(format), "gob/format")
}
