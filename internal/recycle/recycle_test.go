package recycle

import (
	"sync"
	"testing"
)

func TestListGivesBackWhatWasPutUpToMax(t *testing.T) {
	var l List[*[]byte]
	if _, ok := l.Get(); ok {
		t.Fatal("an empty list gave an item")
	}
	bufs := make([]*[]byte, 6)
	for i := range bufs {
		b := make([]byte, i)
		bufs[i] = &b
		l.Put(bufs[i])
	}
	got := map[*[]byte]bool{}
	for {
		b, ok := l.Get()
		if !ok {
			break
		}
		got[b] = true
	}
	if len(got) != 4 || !got[bufs[0]] || !got[bufs[3]] || got[bufs[4]] {
		t.Fatalf("kept %d items, want the first 4 put", len(got))
	}
}

func TestListServesGoroutinesOnEveryP(t *testing.T) {
	l := List[*int]{Max: 2}
	x := new(int)
	l.Put(x)
	var wg sync.WaitGroup
	misses := 0
	var mu sync.Mutex
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			// One item, taken and put back one goroutine at a time: a
			// sync.Pool misses it whenever the goroutine runs on another P.
			v, ok := l.Get()
			if !ok {
				misses++
				return
			}
			l.Put(v)
		}()
	}
	wg.Wait()
	if misses != 0 {
		t.Fatalf("%d of 100 gets missed the one kept item", misses)
	}
}
