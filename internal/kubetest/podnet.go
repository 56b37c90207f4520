package kubetest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// PodNetwork gives test Pods real, non-loopback addresses (EndpointSlices
// refuse 127.0.0.0/8): a network namespace made for the test, joined to the
// host by a veth pair, with the subnet 10.244.N.0/24 on both ends. Backends
// listen inside the namespace (Listen); clients in the test process reach
// them through the veth. Everything is removed at the end of the test. It
// needs root and iproute2's `ip`.
type PodNetwork struct {
	Name   string // the netns
	prefix string // "10.244.N."
	nsIf   string
	nsFile *os.File

	mu   sync.Mutex
	next int
}

// NewPodNetwork makes the namespace and the veth pair.
func NewPodNetwork(t testing.TB) *PodNetwork {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kubetest: PodNetwork needs root (network namespaces); the tests run as root in CI")
	}
	id := strconv.FormatUint(rand.Uint64()%0xffffff, 16)
	subnet := 10 + rand.IntN(240)
	n := &PodNetwork{Name: "mlk-" + id, prefix: fmt.Sprintf("10.244.%d.", subnet), nsIf: "mlp" + id, next: 10}
	hostIf := "mlh" + id
	t.Cleanup(func() {
		if n.nsFile != nil {
			n.nsFile.Close()
		}
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", n.Name).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", n.Name},
		{"link", "add", hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.Name},
		{"addr", "add", n.prefix + "1/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.nsIf, "up"},
		{"-n", n.Name, "route", "add", "default", "dev", n.nsIf},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("kubetest: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	f, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	n.nsFile = f
	return n
}

// NewIP allocates a Pod address inside the namespace.
func (n *PodNetwork) NewIP(t testing.TB) string {
	t.Helper()
	n.mu.Lock()
	n.next++
	ip := n.prefix + strconv.Itoa(n.next)
	n.mu.Unlock()
	if out, err := exec.Command("ip", "-n", n.Name, "addr", "add", ip+"/32", "dev", n.nsIf).CombinedOutput(); err != nil {
		t.Fatalf("kubetest: add %s: %v: %s", ip, err, out)
	}
	return ip
}

// Listen opens a TCP listener inside the namespace, on ip:port (port 0
// picks one). The socket stays in the namespace; serving it needs nothing
// else.
func (n *PodNetwork) Listen(ip string, port int) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters the namespace and is never unlocked, so the
		// runtime retires it when the goroutine ends instead of reusing a
		// thread in the wrong namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(n.nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("kubetest: setns %s: %w", n.Name, err)}
			return
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}
