package listeners

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveCounted serves an answering handler on a counting loopback listener
// with the given read and idle timeouts, and returns its address and the
// read_timeout count.
func serveCounted(t *testing.T, read, idle time.Duration) (string, func() float64) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := DefaultLimits()
	l.ReadTimeout, l.IdleTimeout = read, idle
	srv := m.HTTPServer("http", l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(m.Listener("http", ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), func() float64 { return testutil.ToFloat64(m.exceeded.WithLabelValues("http", LimitReadTimeout)) }
}

// roundTrip sends one whole request on c and reads its answer.
func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "HTTP/1.1 200" {
		t.Fatalf("answer %q %v, want HTTP/1.1 200", b, err)
	}
	// The rest of the answer: "ok" ends it.
	rest := make([]byte, 0, 256)
	buf := make([]byte, 256)
	for !strings.HasSuffix(string(rest), "ok") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		rest = append(rest, buf[:n]...)
	}
}

// closedAfter waits for the server to close c and says how long after
// start it did. It gives up after two minutes: a close that never comes
// fails the test, whatever the machine's load (no tighter upper bound: it
// would only measure how busy the machine is).
func closedAfter(t *testing.T, c net.Conn, start time.Time) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	b := make([]byte, 256)
	n, err := c.Read(b)
	if err == nil {
		t.Fatalf("the server answered %q, want the connection closed", b[:n])
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server did not close the connection in %v", time.Since(start).Round(time.Second))
	}
	return time.Since(start)
}

// A kept-alive connection whose next request stalls after half its header
// is a slow client like one whose first request does: cut after the read
// timeout and counted once.
func TestStalledHeaderOnAKeptAliveConnectionIsCounted(t *testing.T) {
	addr, readTimeouts := serveCounted(t, 300*time.Millisecond, 10*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c)
	roundTrip(t, c)
	time.Sleep(500 * time.Millisecond) // idle longer than the read timeout: not a slow client
	// The server's read deadline starts when this header's first byte
	// comes, after start: a cut sooner is a cut before the read timeout.
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	took := closedAfter(t, c, start)
	if took < 250*time.Millisecond {
		t.Errorf("stalled header cut after %s, before the read timeout (300ms)", took)
	}
	t.Logf("stalled header cut after %s (read timeout 300ms)", took.Round(time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for readTimeouts() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := readTimeouts(); n != 1 {
		t.Errorf("read_timeout counted %v times for one stalled header on a kept-alive connection, want 1", n)
	}
}

// A kept-alive connection closed by the idle timeout is not a slow client.
func TestIdleKeptAliveConnectionClosedIsNotCounted(t *testing.T) {
	addr, readTimeouts := serveCounted(t, 200*time.Millisecond, 2*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The clock starts before the request: the server's idle wait starts
	// after its answer, so the close comes at least the idle timeout (2s)
	// after start; one by the read timeout (200ms) would come far sooner
	// unless the machine stalled for seconds.
	start := time.Now()
	roundTrip(t, c)
	if took := closedAfter(t, c, start); took < 1500*time.Millisecond {
		t.Errorf("idle connection closed after %s, want the idle timeout (2s), not the read timeout (200ms)", took)
	}
	time.Sleep(100 * time.Millisecond)
	if n := readTimeouts(); n != 0 {
		t.Errorf("read_timeout counted %v times for a connection closed idle, want 0", n)
	}
}
