package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// issueNamed writes NAME.pem and NAME-key.pem: a replica's certificate
// naming dnsName only, no IP address, as a certificate for a headless
// Service's name is: dialled by pod IP it verifies only with
// --peer-server-name.
func (ca *testCA) issueNamed(name, dnsName string) (certFile, keyFile string) {
	return ca.sign(name, &x509.Certificate{Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName}})
}

// mergedGraph is what the test reads of GET /api/v1/graph.
type mergedGraph struct {
	Edges []struct {
		Target   string `json:"target"`
		Requests uint64 `json:"requests"`
	} `json:"edges"`
	Partial bool `json:"partial"`
	Missing []struct {
		Replica string `json:"replica"`
		Error   string `json:"error"`
	} `json:"missing"`
}

func getJSON(client *http.Client, url, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// reviewsRequests adds up the requests into the reviews service.
func (g mergedGraph) reviewsRequests() uint64 {
	var n uint64
	for _, e := range g.Edges {
		if strings.Contains(e.Target, "reviews") {
			n += e.Requests
		}
	}
	return n
}

// Replicas serving TLS read each other over HTTPS: three `meshlens serve`
// processes, each sent a different number of spans, answer GET
// /api/v1/graph on any of them with the sum of all three. With plain TLS
// the peers' certificates are verified against --peer-ca by the address
// dialled; with mutual TLS each replica shows its own certificate to the
// others (which refuse a client without one) and verifies theirs against
// --tls-client-ca under --peer-server-name (the certificates name a
// Service, not 127.0.0.1). A replica whose certificate another CA signed is
// left out: the result is partial, naming it and the verification error.
func TestReplicasReadEachOtherOverTLSAndMutualTLS(t *testing.T) {
	ca := newTestCA(t, t.TempDir())
	ctx := context.Background()
	spans := []int{10, 20, 30}

	// send gives replica i its spans and waits until the merged graph
	// read from replica 0 counts want requests.
	send := func(t *testing.T, rs *replicaSet, clients []*http.Client) {
		t.Helper()
		for i, n := range spans[:len(rs.procs)] {
			if err := postSpans(ctx, clients[i], "https://"+rs.otlp[i], "shop", "reviews", "v1", n, 0); err != nil {
				t.Fatalf("spans to replica %d: %v", i, err)
			}
		}
	}
	read := func(client *http.Client, rs *replicaSet, i int) (mergedGraph, error) {
		var g mergedGraph
		err := getJSON(client, "https://"+rs.procs[i].http+"/api/v1/graph?window=5m", rs.token, &g)
		return g, err
	}

	t.Run("TLS, peers verified against --peer-ca by address", func(t *testing.T) {
		var files [][2]string
		for i := range 3 {
			c, k := ca.issue(fmt.Sprintf("tls-%d", i), "meshlens", "")
			files = append(files, [2]string{c, k})
		}
		rs := startReplicasWith(t, 3, func(i int) []string {
			return []string{"--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
				"--tls-cert", files[i][0], "--tls-key", files[i][1], "--peer-ca", ca.file}
		})
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.clientTLS("", "")}}
		send(t, rs, []*http.Client{client, client, client})
		for i := range rs.procs {
			meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("replica %d's graph is the whole mesh's", i), func() error {
				g, err := read(client, rs, i)
				if err != nil {
					return err
				}
				if got := g.reviewsRequests(); got != 60 || g.Partial {
					return fmt.Errorf("requests into reviews %d (want 10+20+30), partial %v, missing %+v", got, g.Partial, g.Missing)
				}
				return nil
			})
		}
	})

	t.Run("mutual TLS under --peer-server-name; a replica of another CA is left out", func(t *testing.T) {
		const name = "meshlens-peers.meshlens.svc"
		other := newTestCA(t, t.TempDir())
		var files [][2]string
		for i := range 3 {
			signer := ca
			if i == 2 {
				signer = other
			}
			c, k := signer.issueNamed(fmt.Sprintf("mtls-%d", i), name)
			files = append(files, [2]string{c, k})
		}
		rs := startReplicasWith(t, 3, func(i int) []string {
			return []string{"--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
				"--tls-cert", files[i][0], "--tls-key", files[i][1], "--tls-client-ca", ca.file, "--peer-server-name", name}
		})
		// The test is a client with a certificate of the replicas' CA.
		clientCert, clientKey := ca.issue("mtls-client", "test", "spiffe://cluster.local/ns/shop/sa/test")
		clientOf := func(roots *testCA) *http.Client {
			cfg := ca.clientTLS(clientCert, clientKey)
			cfg.RootCAs, cfg.ServerName = roots.pool, name
			return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		}
		client := clientOf(ca)
		send(t, rs, []*http.Client{client, client, clientOf(other)})

		for i := range 2 {
			meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("replica %d's graph has replicas 0 and 1 and names replica 2 as missing", i), func() error {
				g, err := read(client, rs, i)
				if err != nil {
					return err
				}
				if got := g.reviewsRequests(); got != 30 {
					return fmt.Errorf("requests into reviews %d, want 10+20 (replica 2 left out)", got)
				}
				if !g.Partial || len(g.Missing) != 1 || g.Missing[0].Replica != rs.procs[2].http ||
					!strings.Contains(g.Missing[0].Error, "certificate signed by unknown authority") {
					return fmt.Errorf("partial %v, missing %+v: want replica 2 (%s) named, its certificate's unknown authority the why", g.Partial, g.Missing, rs.procs[2].http)
				}
				return nil
			})
		}
		// Replica 2 trusts the replicas' CA but they refuse its certificate
		// as a client: it counts only its own traffic and names both.
		meshtest.Eventually(t, 20*time.Second, "replica 2's graph names replicas 0 and 1 as missing", func() error {
			g, err := read(clientOf(other), rs, 2)
			if err != nil {
				return err
			}
			var missing []string
			for _, m := range g.Missing {
				missing = append(missing, m.Replica)
			}
			slices.Sort(missing)
			want := []string{rs.procs[0].http, rs.procs[1].http}
			slices.Sort(want)
			if got := g.reviewsRequests(); got != 30 || !g.Partial || !slices.Equal(missing, want) {
				return fmt.Errorf("requests %d (want its own 30), partial %v, missing %+v (want %v)", got, g.Partial, g.Missing, want)
			}
			return nil
		})
	})
}

// Flags of replicas over TLS that cannot work are refused at start.
func TestPeerTLSFlagsWithoutTLSAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peers", "127.0.0.1:1", "--peer-ca", "/ca.pem"}, `--peer-ca "/ca.pem": replicas read each other over HTTPS only when they serve it (--tls-cert and --tls-key)`},
		{[]string{"--peer-server-name", "meshlens.svc"}, `--peer-server-name "meshlens.svc": replicas read each other over HTTPS only when they serve it`},
	} {
		_, err := app.LoadConfig(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
