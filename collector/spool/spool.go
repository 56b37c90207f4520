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
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/wal"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// ErrFull is returned by Append when the queue is at its bound.
var ErrFull = errors.New("ingest queue is full")

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

	mu     sync.Mutex
	log    *wal.Log
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
	l, err := wal.Open(dir, &wal.Options{
		// Writes reach the page cache at once, which survives a restart of
		// meshlens; the writer calls Sync once per batch it takes, which bounds
		// what a machine crash could lose without an fsync per request.
		NoSync:           true,
		SegmentSize:      4 << 20,
		SegmentCacheSize: 2,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
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
	s := &Spool{maxBytes: maxBytes, epoch: epoch, log: l, last: last, notify: make(chan struct{}, 1)}
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

// Full reports whether the queue is at its bound. The pipeline asks before it
// accepts data, so that data it has accepted is never refused afterwards.
func (s *Spool) Full() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes >= s.maxBytes {
		return fmt.Errorf("%w (%d MiB queued on disk, bound %d MiB): ClickHouse is not keeping up; retry later", ErrFull, s.bytes>>20, s.maxBytes>>20)
	}
	return nil
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
	if err := s.log.Write(s.last+1, data); err != nil {
		return fmt.Errorf("spool: write: %w", err)
	}
	s.last++
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

// Commit removes every entry up to and including index: ClickHouse has them.
func (s *Spool) Commit(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, err := s.log.FirstIndex()
	if err != nil {
		return err
	}
	for i := first; i <= index && len(s.sizes) > 0; i++ {
		s.bytes -= s.sizes[0]
		s.sizes = s.sizes[1:]
	}
	if err := s.log.TruncateFront(index + 1); err != nil {
		return fmt.Errorf("spool: commit %d: %w", index, err)
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
