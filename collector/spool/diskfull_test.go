package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// smallDisk mounts a tmpfs of size MiB for the test, or skips it when the
// test may not mount (not root, no mount(8)).
func smallDisk(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a tmpfs: it runs as root only")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("the disk-full test cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// bigBatch is a batch of about kib KiB whose records name seq.
func bigBatch(seq, kib int) *Batch {
	b := &Batch{}
	for i := range kib {
		b.Records = append(b.Records, mesh.Record{Time: time.Unix(int64(seq), 0).UTC(), Code: 200,
			Path: fmt.Sprintf("/%d/%d/%s", seq, i, strings.Repeat("x", 1000))})
	}
	return b
}

// fill writes a file that leaves about leave bytes free on dir's disk.
func fill(t *testing.T, dir, name string, leave int64) string {
	t.Helper()
	free, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, make([]byte, max(free-leave, 0)), 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("filler: %v", err) // a full disk is what is wanted
	}
	return path
}

// TestDiskFullRefusesUndoesTheFailedWriteAndRecovers fills the queue's
// disk at full speed: Full refuses new data before the reserve is used
// up; a write that fails for lack of room (another writer took it) is
// undone, so every entry accepted before reads back intact, in order, and
// after a reopen; a commit that cannot rewrite its segment is retried
// without losing count; when room returns, appends go on.
func TestDiskFullRefusesUndoesTheFailedWriteAndRecovers(t *testing.T) {
	disk := smallDisk(t, 32)
	dir := filepath.Join(disk, "queue")
	s, err := Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	accepted := 0
	for ; ; accepted++ {
		if err := s.Full(); err != nil {
			if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "MiB free in "+dir) {
				t.Fatalf("Full on a filling disk: %v, want ErrDiskFull naming the free space and the directory", err)
			}
			t.Logf("refused after %d batches of 256 KiB: %v", accepted, err)
			break
		}
		if err := s.Append(bigBatch(accepted, 256)); err != nil {
			t.Fatalf("append %d, accepted by Full: %v", accepted, err)
		}
		if accepted > 200 {
			t.Fatal("a 32 MiB disk never filled up")
		}
	}
	// Appends between two looks at the file system count down its free
	// space: a burst does not run past the reserve.
	if free, _ := freeBytes(dir); free < DiskReserve-(512<<10) {
		t.Errorf("%d KiB free once refusing, want about the reserve, %d KiB", free>>10, DiskReserve>>10)
	}
	if !s.DiskFull() {
		t.Error("DiskFull is false on a full disk")
	}
	// Someone else takes the reserve: the next write fails half-way.
	filler := fill(t, disk, "filler", 64<<10)
	err = s.Append(bigBatch(accepted, 512))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append on a disk with 64 KiB free: %v, want ErrDiskFull", err)
	}
	t.Logf("write refused: %v", err)

	check := func(what string, s *Spool, from, n int) []Entry {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var got []Entry
		for len(got) < n {
			es, err := s.Next(ctx, 256)
			if err != nil {
				t.Fatalf("%s: %d of %d entries read: %v", what, len(got), n, err)
			}
			got = append(got, es...)
		}
		for i, e := range got {
			want := fmt.Sprintf("/%d/0/", from+i)
			if e.Batch == nil || len(e.Batch.Records) != 256 || !strings.HasPrefix(e.Batch.Records[0].Path, want) {
				t.Fatalf("%s: entry %d is not batch %d", what, i, from+i)
			}
		}
		return got
	}
	got := check("after the failed write", s, 0, accepted)

	// A commit cannot rewrite the oldest segment on a disk without room;
	// retried once there is room, the queue's count is right.
	rest := fill(t, disk, "rest", 0)
	commitErr := s.Commit(got[0].Index)
	if commitErr == nil {
		t.Log("the commit needed no room")
	}
	t.Logf("commit on a full disk: %v", commitErr)
	for _, f := range []string{filler, rest} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if commitErr != nil {
		if err := s.Commit(got[0].Index); err != nil {
			t.Fatalf("commit with room again: %v", err)
		}
	}
	if n, _ := s.Depth(); n != accepted-1 {
		t.Fatalf("depth after committing one of %d: %d", accepted, n)
	}
	s.statAt = time.Time{}
	if err := s.Full(); err != nil {
		t.Fatalf("Full with room again: %v", err)
	}
	if err := s.Append(bigBatch(accepted, 256)); err != nil {
		t.Fatalf("append with room again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, 1<<30)
	if err != nil {
		t.Fatalf("reopen after the failed write: %v", err)
	}
	check("after reopening", s, 1, accepted)
}
