package meshtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildMeshlens builds cmd/meshlens of the repository at root into dir and
// returns the binary's path, for tests outside cmd/meshlens (the Grafana
// plugin's module) that run `meshlens serve` as users do.
func BuildMeshlens(root, dir string) (string, error) {
	bin := dir + "/meshlens"
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/meshlens")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build meshlens in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// FreeAddr is a loopback address with a port nothing listens on (yet).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Serve is `meshlens serve` running as a child process, every listener on
// a free loopback port unless the arguments say otherwise.
type Serve struct {
	HTTP string // host:port of the API
	OTLP string // host:port of the OTLP/gRPC receiver

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	mu   sync.Mutex
	log  strings.Builder
}

// StartServe starts bin serve with args and waits until /readyz answers
// 200. The process is stopped when the test ends; its log is printed if the
// test failed.
func StartServe(t testing.TB, bin string, args ...string) *Serve {
	t.Helper()
	return StartServeAt(t, bin, FreeAddr(t), args...)
}

// StartServeAt is StartServe with the HTTP address given, for replicas
// that must know each other's before they start. With --tls-cert in args,
// readiness is asked as Kubernetes asks it: over TLS, not verifying the
// server, without a client certificate.
func StartServeAt(t testing.TB, bin, httpAddr string, args ...string) *Serve {
	t.Helper()
	s := &Serve{HTTP: httpAddr, OTLP: FreeAddr(t), done: make(chan struct{})}
	base := []string{"serve", "--http", s.HTTP, "--xds", FreeAddr(t), "--otlp-grpc", s.OTLP, "--otlp-http", FreeAddr(t), "--als", FreeAddr(t)}
	s.cmd = exec.Command(bin, append(base, args...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start meshlens serve: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("meshlens serve log:\n%s", s.Log())
		}
	})
	readyURL, client := "http://"+s.HTTP+"/readyz", http.DefaultClient
	if slices.Contains(args, "--tls-cert") {
		readyURL = "https://" + s.HTTP + "/readyz"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyURL, nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("meshlens serve exited (%v) before it was ready:\n%s", s.err, s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshlens serve was not ready within 60s:\n%s", s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL is the base URL of the API.
func (s *Serve) URL() string { return "http://" + s.HTTP }

// Log is what the process wrote to stderr so far.
func (s *Serve) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Process is the running process, for tests that signal it (SIGSTOP,
// SIGKILL).
func (s *Serve) Process() *os.Process { return s.cmd.Process }

// Running reports whether the process has not exited.
func (s *Serve) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Exited is closed when the process has exited; Err is then how.
func (s *Serve) Exited() <-chan struct{} { return s.done }

// Err is how the process exited (nil: status 0), once Exited is closed.
func (s *Serve) Err() error {
	<-s.done
	return s.err
}

// Stop interrupts the process and waits for it (killing it after 30s).
func (s *Serve) Stop() {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Kill ends the process at once with SIGKILL, as a crashed pod (no
// shutdown, no Lease released), and waits for it.
func (s *Serve) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// StopClean interrupts the process as Kubernetes does (SIGINT here,
// handled as SIGTERM) and fails the test unless it exits 0 within 30s.
func (s *Serve) StopClean(t testing.TB) {
	t.Helper()
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("meshlens exited with %v", s.err)
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("meshlens did not stop within 30s of SIGINT")
	}
}
