package meshtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is a TCP proxy on loopback in front of a server that a test
// turns slow (SetDelay), down (SetDown: connections cut and refused, as a
// server that is gone) or cut off (Cut: what either side sends is dropped
// and connections hang, as in a network partition, until Heal).
type FaultProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64
	down   atomic.Bool
	cut    atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

// StartFaultProxy forwards a new loopback port to target until the test
// ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				c.Close()
				continue
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	return p
}

// Addr is where clients dial instead of the target.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// SetDelay makes each chunk the target answers wait d (0: none).
func (p *FaultProxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// SetDown cuts every connection and refuses new ones, or lets them in.
func (p *FaultProxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.closeAll()
	}
}

// Cut drops what either side sends from now on; connections stay open
// and hang, and new ones are accepted but never forwarded.
func (p *FaultProxy) Cut() { p.cut.Store(true) }

// Heal ends a Cut and closes the connections that lost data, so clients
// dial again.
func (p *FaultProxy) Heal() {
	p.cut.Store(false)
	p.closeAll()
}

func (p *FaultProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *FaultProxy) track(add bool, cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if add {
			p.conns[c] = true
		} else {
			delete(p.conns, c)
		}
	}
}

func (p *FaultProxy) serve(c net.Conn) {
	p.track(true, c)
	defer p.track(false, c)
	// A connection made while cut is never forwarded: it waits for a heal
	// (which closes it) or for the client to give up.
	for p.cut.Load() {
		if _, err := c.Read(make([]byte, 4096)); err != nil {
			c.Close()
			return
		}
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.track(true, up)
	defer p.track(false, up)
	done := make(chan struct{})
	go func() { p.pipe(up, c, false); close(done) }()
	p.pipe(c, up, true)
	<-done
}

// pipe copies src to dst, each chunk after the proxy's delay when it is
// the target's answer, dropping what arrives while cut; then closes both.
func (p *FaultProxy) pipe(dst, src net.Conn, answer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.cut.Load() {
			if d := time.Duration(p.delay.Load()); answer && d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}
