// Package recycle keeps the few large buffers of a component's queries for
// the next query.
//
// A sync.Pool is the wrong keeper for them: its Get looks in the calling
// P's own slot and steals only from the other Ps' shared lists, so the one
// big buffer of a query, put back by a goroutine on another P, is missed
// about every other time; and every garbage collection empties it. A miss
// costs the whole buffer again in memory new to the process, a page fault
// per 4 KB on first touch (about 15 µs each on the machine the graph query
// benchmark runs on).
package recycle

import "sync"

// List keeps up to Max items (4 when Max is 0) for reuse. The zero value is
// ready; it is safe for concurrent use.
type List[T any] struct {
	Max  int
	mu   sync.Mutex
	free []T
}

// Get returns a kept item, or false when none is kept.
func (l *List[T]) Get() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var zero T
	n := len(l.free)
	if n == 0 {
		return zero, false
	}
	x := l.free[n-1]
	l.free[n-1] = zero
	l.free = l.free[:n-1]
	return x, true
}

// Put keeps x for a later Get, or drops it when Max items are kept already.
func (l *List[T]) Put(x T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := l.Max
	if limit <= 0 {
		limit = 4
	}
	if len(l.free) < limit {
		l.free = append(l.free, x)
	}
}
