// Package spool is the collector's durable, bounded queue between the
// pipeline and ClickHouse. Normalised batches are appended to a write-ahead
// log on disk (github.com/tidwall/wal) and removed only after ClickHouse has
// accepted them, so neither a ClickHouse outage nor a meshlens restart loses
// anything. When the queue holds MaxBytes, Append refuses with ErrFull and the
// receivers push back on their senders.
package spool

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tidwall/wal"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// ErrFull is returned by Append when the queue is at its bound.
var ErrFull = errors.New("ingest queue is full")

// ErrDiskFull is returned by Full and Append while the file system of the
// queue has too little room: new data is refused (retryably) so that what
// was accepted can still be written and committed.
var ErrDiskFull = errors.New("the data dir's disk is full")

// segmentSize is the size of one file of the write-ahead log.
const segmentSize = 4 << 20

// DiskReserve is the free space Full keeps on the queue's file system: a
// commit rewrites the rest of the oldest segment, and what was accepted
// last must still fit.
const DiskReserve = 2*segmentSize + 1<<20

// Batch is one unit of queued rows.
type Batch struct {
	Records []mesh.Record
	Spans   []store.Span
	Points  []store.MetricPoint
	Logs    []store.LogRow
}

// Rows is the number of rows in b.
func (b *Batch) Rows() int { return len(b.Records) + len(b.Spans) + len(b.Points) + len(b.Logs) }

// Entry is a queued batch and its position.
type Entry struct {
	Index uint64
	ID    uint64 // unique across queues and restarts: epoch<<32 | index
	Batch *Batch
	Size  int
}

// Spool is the queue. Append and Next may be called concurrently; Next and
// Commit belong to a single consumer (which may call them from two
// goroutines: the writer reads ahead while it commits what it wrote).
type Spool struct {
	maxBytes int64
	epoch    uint64 // random, chosen when the queue directory was created

	dir string

	mu  sync.Mutex
	log *wal.Log
	// recovered is the index of the last entry a previous run left: the
	// writer may have written those to ClickHouse before it stopped.
	recovered uint64
	// diskFull: the last write or look at the file system found no room;
	// statAt is when the file system was last asked.
	diskFull bool
	free     int64
	statAt   time.Time
	// written is what Append wrote since statAt: free space is counted
	// down by it between two looks, so a burst cannot run past the reserve.
	written int64
	// broken is set when a failed write could not be undone; nothing more
	// is appended.
	broken error
	last   uint64  // index of the last entry written
	read   uint64  // index of the last entry handed out by Next
	sizes  []int64 // sizes of entries not yet committed, oldest first
	bytes  int64   // sum of sizes
	notify chan struct{}
	closed bool
}

// Open opens or creates the queue in dir. Entries left by a previous run are
// delivered first.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	l, err := wal.Open(dir, walOptions())
	if err != nil {
		return nil, fmt.Errorf("spool %s: open write-ahead log: %w (move the directory aside to start empty)", dir, err)
	}
	first, err := l.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	last, err := l.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	epoch, err := loadEpoch(filepath.Join(dir, "epoch"))
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &Spool{maxBytes: maxBytes, epoch: epoch, dir: dir, log: l, last: last, recovered: last, notify: make(chan struct{}, 1)}
	if first == 0 {
		first = 1
	}
	s.read = first - 1
	for i := first; i <= last; i++ {
		data, err := l.Read(i)
		if err != nil {
			return nil, fmt.Errorf("spool %s: read entry %d: %w", dir, i, err)
		}
		s.sizes = append(s.sizes, int64(len(data)))
		s.bytes += int64(len(data))
	}
	return s, nil
}

func walOptions() *wal.Options {
	return &wal.Options{
		// Writes reach the page cache at once, which survives a restart of
		// meshlens; the writer calls Sync once per batch it takes, which bounds
		// what a machine crash could lose without an fsync per request.
		NoSync:           true,
		SegmentSize:      segmentSize,
		SegmentCacheSize: 2,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// Recovered is the index of the last entry the previous run left in the
// queue (0 if none): entries up to it may already be in ClickHouse.
func (s *Spool) Recovered() uint64 { return s.recovered }

// Full reports whether the queue is at its bound or its disk has less than
// DiskReserve free. The pipeline asks before it accepts data, so that data
// it has accepted is never refused afterwards.
func (s *Spool) Full() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return s.broken
	}
	if s.bytes >= s.maxBytes {
		return fmt.Errorf("%w (%d MiB queued on disk, bound %d MiB): ClickHouse is not keeping up; retry later", ErrFull, s.bytes>>20, s.maxBytes>>20)
	}
	return s.diskLocked()
}

// DiskFull reports whether new data is refused for lack of disk space.
func (s *Spool) DiskFull() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskLocked() != nil
}

// diskLocked asks the file system for its free space (at most every 100ms)
// and refuses while it is under DiskReserve.
func (s *Spool) diskLocked() error {
	if now := time.Now(); now.Sub(s.statAt) >= 100*time.Millisecond {
		s.statAt = now
		if free, err := freeBytes(s.dir); err == nil {
			s.free, s.written = free, 0
			s.diskFull = false
		}
	}
	if free := s.free - s.written; s.diskFull || free < DiskReserve {
		return fmt.Errorf("%w: %d MiB free in %s, and meshlens keeps %d MiB for the %d MiB it has accepted and not yet written; new telemetry is refused until there is room; retry later",
			ErrDiskFull, max(free, 0)>>20, s.dir, DiskReserve>>20, s.bytes>>20)
	}
	return nil
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Append queues a batch. The bound is checked by Full beforehand; Append
// itself never refuses accepted data for lack of room.
func (s *Spool) Append(b *Batch) error {
	data := encodeBatch(nil, b)
	size := int64(len(data))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool is closed")
	}
	if s.broken != nil {
		return s.broken
	}
	if err := s.log.Write(s.last+1, data); err != nil {
		// The log keeps the failed entry in memory and maybe a part of it
		// on disk: both are undone, or the next entry would be read as
		// this one and the log would not open again.
		if rerr := s.undoLocked(); rerr != nil {
			s.broken = fmt.Errorf("spool %s: a write failed (%w) and could not be undone (%v); restart meshlens", s.dir, err, rerr)
			return s.broken
		}
		if errors.Is(err, syscall.ENOSPC) {
			s.diskFull, s.statAt = true, time.Now()
			return fmt.Errorf("%w: writing %d bytes to %s: %w; retry later", ErrDiskFull, size, s.dir, err)
		}
		return fmt.Errorf("spool: write: %w", err)
	}
	s.last++
	s.written += size
	s.sizes = append(s.sizes, size)
	s.bytes += size
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// Next returns up to max entries not yet handed out, waiting until at least
// one exists or ctx ends.
func (s *Spool) Next(ctx context.Context, max int) ([]Entry, error) {
	for {
		s.mu.Lock()
		avail := s.last - s.read
		s.mu.Unlock()
		if avail > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
	// The entries are read under the lock and decoded after it, so that
	// Append does not wait for the decoding.
	var out []Entry
	var raw [][]byte
	s.mu.Lock()
	for s.read < s.last && len(out) < max {
		idx := s.read + 1
		data, err := s.log.Read(idx)
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("spool: read entry %d: %w", idx, err)
		}
		out = append(out, Entry{Index: idx, ID: s.id(idx), Size: len(data)})
		raw = append(raw, data)
		s.read = idx
	}
	s.mu.Unlock()
	for i, data := range raw {
		// An entry this process cannot read is skipped, not retried
		// forever (Batch stays nil); the caller counts it as dropped.
		out[i].Batch, _ = decode(data)
	}
	return out, nil
}

// decode decodes an entry of either format: this one, or gob, as meshlens
// wrote entries before.
func decode(data []byte) (*Batch, error) {
	if len(data) > 0 && data[0] != formatTag {
		return decodeLegacy(data)
	}
	return decodeBatch(data)
}

// decodeLegacy decodes an entry an older meshlens left in the queue.
func decodeLegacy(data []byte) (*Batch, error) {
	b := new(Batch)
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(b); err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return b, nil
}

// undoLocked brings the log back to its last entry, s.last: it closes the
// log, cuts the segment files after that entry and opens the log again.
func (s *Spool) undoLocked() error {
	_ = s.log.Close() // the state in memory is what is being thrown away
	if err := truncateSegments(s.dir, s.last); err != nil {
		return err
	}
	l, err := wal.Open(s.dir, walOptions())
	if err != nil {
		return fmt.Errorf("reopen write-ahead log: %w", err)
	}
	if last, err := l.LastIndex(); err != nil || last != s.last {
		l.Close()
		return fmt.Errorf("reopened write-ahead log ends at entry %d, want %d (%v)", last, s.last, err)
	}
	s.log = l
	return nil
}

// truncateSegments cuts the write-ahead log's segment files in dir after
// entry last. A segment file is named by the index of its first entry and
// holds entries as uvarint size + data (tidwall/wal's binary format).
func truncateSegments(dir string, last uint64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var starts []uint64
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && len(e.Name()) == 20 {
			starts = append(starts, n)
		}
	}
	slices.Sort(starts)
	for i, start := range starts {
		path := filepath.Join(dir, fmt.Sprintf("%020d", start))
		if start > last && i > 0 {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		if i+1 < len(starts) && starts[i+1] <= last {
			continue // wholly before the end
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		off := 0
		for idx := start; idx <= last; idx++ {
			size, n := binary.Uvarint(data[off:])
			if n <= 0 || uint64(len(data)-off-n) < size {
				return fmt.Errorf("segment %s: entry %d is incomplete", path, idx)
			}
			off += n + int(size)
		}
		if err := os.Truncate(path, int64(off)); err != nil {
			return err
		}
	}
	return nil
}

// Commit removes every entry up to and including index: ClickHouse has them.
func (s *Spool) Commit(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, err := s.log.FirstIndex()
	if err != nil {
		return err
	}
	if err := s.log.TruncateFront(index + 1); err != nil {
		return fmt.Errorf("spool: commit %d: %w", index, err)
	}
	for i := first; i <= index && len(s.sizes) > 0; i++ {
		s.bytes -= s.sizes[0]
		s.sizes = s.sizes[1:]
	}
	return nil
}

// Sync flushes written entries to stable storage.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Sync()
}

// Depth returns the number of entries and bytes waiting.
func (s *Spool) Depth() (entries int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sizes), s.bytes
}

// Close syncs and closes the log.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.log.Sync(); err != nil {
		s.log.Close()
		return err
	}
	return s.log.Close()
}

func (s *Spool) id(index uint64) uint64 { return s.epoch<<32 | index&0xffffffff }

// loadEpoch reads the queue's epoch, creating it on first use. Entry ids
// combine it with the entry index, so a queue directory that is wiped and
// started again never reuses an id that ClickHouse has already seen.
func loadEpoch(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	epoch := uint64(binary.BigEndian.Uint32(b[:])) | 1
	if err := os.WriteFile(path, []byte(strconv.FormatUint(epoch, 10)+"\n"), 0o640); err != nil {
		return 0, err
	}
	return epoch, nil
}
