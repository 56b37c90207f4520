package replicas

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// testCA makes a CA and a loopback server certificate it signs.
func testCA(t *testing.T) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "replicas test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A peer CA file rewritten in place (a rotated Secret) is trusted from the
// next look at it on, without a restart; an unreadable one is refused at
// start, naming the flag.
func TestAPeerCAWrittenAnewIsTrustedWithoutARestart(t *testing.T) {
	ctx := context.Background()
	oldCA, _ := testCA(t)
	newCA, cert := testCA(t)
	peer, err := New(newLive(t, time.Now), Options{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	peer.RegisterRoutes(e.Group("/api/v1"))
	srv := httptest.NewUnstartedServer(e)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")

	caFile := filepath.Join(t.TempDir(), "peer-ca.pem")
	if err := os.WriteFile(caFile, oldCA, 0o600); err != nil {
		t.Fatal(err)
	}
	const reload = 50 * time.Millisecond
	r, err := New(newLive(t, time.Now), Options{Peers: func() []string { return []string{addr} },
		TLS: &TLSOptions{CAFile: caFile, Reload: reload}}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, missing, err := r.TrafficAt(ctx, time.Now(), time.Minute)
	if err != nil || len(missing) != 1 || !strings.Contains(missing[0].Error, "unknown authority") {
		t.Fatalf("peer with a certificate of another CA: %v %+v, want it missing for its unknown authority", err, missing)
	}
	if err := os.WriteFile(caFile, newCA, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * reload)
	if _, missing, err = r.TrafficAt(ctx, time.Now(), time.Minute); err != nil || len(missing) != 0 {
		t.Fatalf("after the CA file changed: %v %+v, want the peer read", err, missing)
	}

	_, err = New(newLive(t, time.Now), Options{TLS: &TLSOptions{CAFile: filepath.Join(t.TempDir(), "none.pem"), CAFlag: "--peer-ca"}},
		slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "--peer-ca") || !strings.Contains(err.Error(), "none.pem") {
		t.Fatalf("missing CA file: %v, want an error naming --peer-ca and the file", err)
	}
}

// A service's series read from any replica is that of one graph fed every
// replica's records: the same points, percentiles included.
func TestMergedServiceSeriesAreTheWholeTrafficsSeries(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }
	reps := cluster(t, 3, now)
	all := newLive(t, now)
	recs := records(end, 3000)
	for i := 0; i < len(recs); i += 100 {
		_ = reps[(i/100)%3].live.ConsumeRecords(ctx, recs[i:i+100])
		_ = all.ConsumeRecords(ctx, recs[i:i+100])
	}
	for _, r := range reps {
		r.live.Refresh()
	}
	want, wantStep, err := all.Refresh().ServiceSeries("shop", "svc4", 5*time.Minute, 60)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, s := range want {
		for _, p := range s.Points {
			n += p.Requests
		}
	}
	if n == 0 {
		t.Fatal("no traffic into shop/svc4 in the records")
	}
	for i, r := range reps {
		got, step, missing, err := r.reps.ServiceSeries(ctx, "shop", "svc4", end, 5*time.Minute, 60)
		if err != nil || len(missing) > 0 {
			t.Fatalf("replica %d: %v %+v", i, err, missing)
		}
		if step != wantStep || !reflect.DeepEqual(got, want) {
			t.Fatalf("replica %d: merged series (step %v)\n%+v\nwant (step %v)\n%+v", i, step, got, wantStep, want)
		}
	}
}
