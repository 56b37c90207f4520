package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetterFile is the dead-letter file's name in the data dir.
const DeadLetterFile = "dead-letter.jsonl"

// DeadLetter is the file where rows ClickHouse refused are set aside: one JSON
// line per refused queue entry (or group of entries), with when, which
// table, why, and the rows as meshlens holds them. It is bounded; past its
// bound, refused rows are dropped and counted.
type DeadLetter struct {
	path     string
	maxBytes int64

	mu   sync.Mutex
	size int64
}

// DeadLetterEntry is one line of the dead-letter file.
type DeadLetterEntry struct {
	At     time.Time `json:"at"`
	Signal string    `json:"signal"`
	Table  string    `json:"table"`
	// QueueEntries are the ids of the queue entries the rows came from
	// (the tables' batch column).
	QueueEntries []uint64        `json:"queueEntries"`
	Count        int             `json:"count"`
	Error        string          `json:"error"`
	Rows         json.RawMessage `json:"rows"`
}

// OpenDeadLetter opens (creating when needed) the dead-letter file in dir.
func OpenDeadLetter(dir string, maxBytes int64) (*DeadLetter, error) {
	path := filepath.Join(dir, DeadLetterFile)
	d := &DeadLetter{path: path, maxBytes: maxBytes}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("dead-letter file: %w", err)
	default:
		d.size = fi.Size()
	}
	return d, nil
}

// Path is where the file is.
func (d *DeadLetter) Path() string { return d.path }

// Add appends one line durably (fsync), or fails when the file would pass
// its bound.
func (d *DeadLetter) Add(signal, table string, ids []uint64, count int, why error, rows any) error {
	data, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("dead-letter file: encode rows: %w", err)
	}
	line, err := json.Marshal(DeadLetterEntry{At: time.Now().UTC(), Signal: signal, Table: table,
		QueueEntries: ids, Count: count, Error: why.Error(), Rows: data})
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	line = append(line, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.size+int64(len(line)) > d.maxBytes {
		return fmt.Errorf("dead-letter file %s: full (%d of %d bytes; see --dead-letter-max-bytes)", d.path, d.size, d.maxBytes)
	}
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	n, werr := f.Write(line)
	d.size += int64(n)
	if werr == nil {
		werr = f.Sync()
	}
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", d.path, err)
	}
	return nil
}
