package spool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

func batchOf(n int, svc string) *Batch {
	b := &Batch{}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, mesh.Record{Time: time.Unix(int64(i), 0).UTC(), Destination: mesh.Peer{Service: svc}, Code: 200})
	}
	return b
}

func TestEntriesSurviveReopenUntilCommitted(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i, svc := range []string{"a", "b", "c"} {
		if err := s.Append(batchOf(i+1, svc)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := s.Next(ctx, 1)
	if err != nil || len(got) != 1 || got[0].Batch.Records[0].Destination.Service != "a" {
		t.Fatalf("Next = %+v, %v; want the first batch", got, err)
	}
	if err := s.Commit(got[0].Index); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Depth(); n != 2 {
		t.Fatalf("depth after reopen = %d, want 2 uncommitted batches", n)
	}
	got, err = s.Next(ctx, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("Next after reopen = %d entries, %v", len(got), err)
	}
	if got[0].Batch.Records[0].Destination.Service != "b" || len(got[1].Batch.Records) != 3 {
		t.Fatalf("wrong entries after reopen: %+v", got)
	}
	if err := s.Commit(got[1].Index); err != nil {
		t.Fatal(err)
	}
	if n, b := s.Depth(); n != 0 || b != 0 {
		t.Fatalf("depth after committing all = %d entries, %d bytes", n, b)
	}
}

func TestFullReportsTheBoundAndCommitFreesRoom(t *testing.T) {
	s, err := Open(t.TempDir(), 1) // any entry fills it
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Full(); err != nil {
		t.Fatalf("empty spool reports full: %v", err)
	}
	if err := s.Append(batchOf(10, "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Full(); !errors.Is(err, ErrFull) {
		t.Fatalf("Full() = %v, want ErrFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := s.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(got[len(got)-1].Index); err != nil {
		t.Fatal(err)
	}
	if err := s.Full(); err != nil {
		t.Fatalf("still full after commit: %v", err)
	}
}

func TestNextWaitsAndHonoursContext(t *testing.T) {
	s, err := Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty spool = %v, want deadline exceeded", err)
	}
}
