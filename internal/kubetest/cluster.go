// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver built from their Go modules by scripts/k8s-bins.sh (once per
// machine, cached under .run/k8s), started on loopback ports in a temporary
// directory, with an admin token, a kubeconfig for client-go and kubectl,
// and Istio's and meshlens' CRDs installed. No fake clients: what the tests
// drive is what a cluster runs.
//
// Without a kubelet or controller-manager, tests play both: PodNetwork gives
// Pods real addresses in a network namespace, and Kubelet / WriteEndpoints
// set Pod status and EndpointSlices as they would.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is a running API server.
type Cluster struct {
	// Dir holds the data, certificates, logs and the kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (for kubectl and
	// `meshlens serve --kubeconfig`).
	Kubeconfig string
	// Bin is the directory of the binaries (etcd, kube-apiserver, kubectl).
	Bin string
	// URL is the API server's https address.
	URL string
	// Token is the admin's bearer token.
	Token string

	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface

	procs []*exec.Cmd
	// exited is closed, by process, once it was waited for: Stop waits on
	// it instead of reading ProcessState, which the waiting goroutine writes.
	exited map[*exec.Cmd]chan struct{}
}

// Options tune Start.
type Options struct {
	// Users are extra token users "TOKEN,NAME" (no groups) for RBAC tests.
	Users []string
}

// Start builds (if needed) and starts etcd and kube-apiserver and waits for
// /readyz. Stop ends them.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := Binaries(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "meshlens-kube-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	c := &Cluster{Dir: dir, Bin: bin, Token: randomHex(16)}
	if err := c.start(ctx, opts); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	tokens := c.Token + ",admin,admin-uid,system:masters\n"
	for i, u := range opts.Users {
		tokens += u + ",uid-" + strconv.Itoa(i) + "\n"
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if err := writeServiceAccountKey(c.Dir); err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.run("etcd", "--name=test", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--initial-cluster-state=new", "--unsafe-no-fsync=true",
		"--log-level=warn"); err != nil {
		return err
	}
	certs := filepath.Join(c.Dir, "certs")
	if err := c.run("kube-apiserver", "--etcd-servers="+etcdURL, "--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(apiPort), "--cert-dir="+certs,
		"--token-auth-file="+filepath.Join(c.Dir, "tokens.csv"), "--authorization-mode=Node,RBAC",
		"--service-account-key-file="+filepath.Join(c.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16", "--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false", "-v=0"); err != nil {
		return err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := c.waitReady(ctx, filepath.Join(certs, "apiserver.crt")); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(c.kubeconfig("admin", c.Token)), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	c.Config = c.RESTConfig(c.Token)
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}

// RESTConfig is a client config for a token user of this cluster.
func (c *Cluster) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host: c.URL, BearerToken: token, QPS: 200, Burst: 400,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(c.Dir, "certs", "apiserver.crt")},
	}
}

// WriteKubeconfig writes a kubeconfig for a token user and returns its path.
func (c *Cluster) WriteKubeconfig(user, token string) (string, error) {
	path := filepath.Join(c.Dir, "kubeconfig-"+user)
	return path, os.WriteFile(path, []byte(c.kubeconfig(user, token)), 0o600)
}

func (c *Cluster) kubeconfig(user, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: %s}
current-context: test
`, c.URL, filepath.Join(c.Dir, "certs", "apiserver.crt"), user, token, user)
}

func (c *Cluster) run(name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	cmd := exec.Command(filepath.Join(c.Bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and killed with the test process if that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the OS thread that started the process exits,
	// not the process: Go retires threads that a goroutine locked and left
	// locked (PodNetwork.Listen does, to enter a network namespace), which
	// killed the API server under the tests at random. The process is
	// started and waited for on a thread of its own that lives as long as
	// it does.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		logf.Close()
	}()
	if err := <-started; err != nil {
		logf.Close()
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	if c.exited == nil {
		c.exited = map[*exec.Cmd]chan struct{}{}
	}
	c.exited[cmd] = exited
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, caFile string) error {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := os.Stat(caFile); err == nil {
			client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // only to poll readiness of our own server
			}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+c.Token)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("/readyz: %s", resp.Status)
			}
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: kube-apiserver not ready after 90s (%v); its log: %s", last, tail(filepath.Join(c.Dir, "kube-apiserver.log")))
}

// StopAPIServer kills kube-apiserver (etcd keeps running), for outage tests;
// RestartAPIServer starts it again on the same port.
func (c *Cluster) StopAPIServer() {
	for _, p := range c.procs {
		if filepath.Base(p.Path) == "kube-apiserver" && p.Process != nil {
			_ = p.Process.Kill()
		}
	}
}

// RestartAPIServer starts a stopped kube-apiserver again with its old flags.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	for i, p := range c.procs {
		if filepath.Base(p.Path) != "kube-apiserver" {
			continue
		}
		c.procs = append(c.procs[:i], c.procs[i+1:]...)
		delete(c.exited, p)
		if err := c.run("kube-apiserver", p.Args[1:]...); err != nil {
			return err
		}
		return c.waitReady(ctx, filepath.Join(c.Dir, "certs", "apiserver.crt"))
	}
	return errors.New("kubetest: no kube-apiserver to restart")
}

// Stop ends the processes and removes the directory.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		if p := c.procs[i].Process; p != nil {
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range c.procs {
		select {
		case <-c.exited[p]:
		case <-time.After(time.Second):
		}
	}
	if c.Dir != "" && os.Getenv("MESHLENS_KUBETEST_KEEP") == "" {
		_ = os.RemoveAll(c.Dir)
	}
}

// LimitedUser (token LimitedToken) exists on the shared cluster with no
// permissions at all: RBAC tests bind it the roles they mean to test.
const (
	LimitedUser  = "limited"
	LimitedToken = "limited-token-0123456789"
)

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Shared returns one cluster per test binary, started on first use (each
// test makes its own namespaces). Packages that use it call Main from
// TestMain so that it is stopped at the end.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, Options{Users: []string{LimitedToken + "," + LimitedUser}})
		if sharedErr == nil {
			sharedErr = shared.InstallCRDs(ctx)
		}
	})
	if sharedErr != nil {
		t.Fatalf("kubetest: %v", sharedErr)
	}
	return shared
}

// Main runs the tests and stops the shared cluster: func TestMain(m
// *testing.M) { os.Exit(kubetest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// StopShared stops the shared cluster if a test started it; for a TestMain
// that does more than Main.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Binaries returns the directory of etcd, kube-apiserver and kubectl,
// building them on first use (scripts/k8s-bins.sh: 10-15 minutes cold).
// MESHLENS_K8S_BIN overrides.
func Binaries(ctx context.Context) (string, error) {
	if d := os.Getenv("MESHLENS_K8S_BIN"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "k8s-bins.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubetest: scripts/k8s-bins.sh: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// RepoRoot is the directory of meshlens' go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/meshlens/meshlens\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: meshlens' go.mod not found above the working directory")
		}
		dir = parent
	}
}

func writeServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
