package jwks

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/meshtest"
)

const keysA = `{"keys":[{"kty":"EC","crv":"P-256","kid":"a1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
const keysB = `{"keys":[{"kty":"oct","kid":"b1","k":"c2VjcmV0"}]}`

// issuerServer is an OpenID provider on loopback: its discovery document
// names /jwks, which serves what jwks holds (an HTTP status when it starts
// with a digit).
type issuerServer struct {
	*httptest.Server
	jwks  atomic.Value // string
	calls atomic.Int64
}

func newIssuer(t *testing.T, body string) *issuerServer {
	t.Helper()
	s := &issuerServer{}
	s.jwks.Store(body)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, s.URL, s.URL+"/jwks")
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		b := s.jwks.Load().(string)
		if b != "" && b[0] >= '0' && b[0] <= '9' {
			var code int
			fmt.Sscan(b, &code)
			http.Error(w, "down", code)
			return
		}
		fmt.Fprint(w, b)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func snapshot(t *testing.T, yaml string) *config.Snapshot {
	t.Helper()
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kinds.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return &config.Snapshot{Version: 1, Objects: objs}
}

func ra(rules string) string {
	return "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: api, namespace: default}\nspec:\n  jwtRules:\n" + rules
}

// latest records what OnChange published.
type latest struct {
	mu sync.Mutex
	k  *Keys
	n  int
}

func (l *latest) set(k *Keys) { l.mu.Lock(); l.k = k; l.n++; l.mu.Unlock() }
func (l *latest) get() *Keys  { l.mu.Lock(); defer l.mu.Unlock(); return l.k }

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, cfg Config) (*Resolver, *latest) {
	t.Helper()
	l := &latest{}
	cfg.OnChange = l.set
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, r.Run)
	return r, l
}

// Keys come from a jwksUri, or by OpenID discovery from an issuer without
// one; a rule with inline jwks fetches nothing.
func TestResolverFetchesJWKSUriAndDiscoversTheRest(t *testing.T) {
	a, b := newIssuer(t, keysA), newIssuer(t, keysB)
	r, l := start(t, Config{})
	r.Update(snapshot(t, ra(fmt.Sprintf("  - {issuer: a, jwksUri: %q}\n  - {issuer: %q}\n  - {issuer: inline, jwks: '%s'}\n", a.URL+"/jwks", b.URL, keysB))))
	eventually(t, "both key sets fetched", func() error {
		k := l.get()
		ra, _ := k.Lookup("a", a.URL+"/jwks")
		rb, _ := k.Lookup(b.URL, "")
		if ra.JWKS != keysA || rb.JWKS != keysB || rb.URI != b.URL+"/jwks" {
			return fmt.Errorf("a %+v, b %+v", ra, rb)
		}
		return nil
	})
	if _, ok := l.get().Lookup("inline", ""); ok {
		t.Error("a rule with inline jwks was fetched")
	}
	if f := r.Keys().Failures(); len(f) != 0 {
		t.Errorf("failures %v", f)
	}
}

// Keys that cannot be fetched: the result says why, the issuer is listed
// as failing and counted as unavailable; the retry after the issuer
// recovers fetches them; a later failure keeps the keys fetched.
func TestResolverFailsClosedSaysWhyAndRecovers(t *testing.T) {
	iss := newIssuer(t, "503")
	reg := prometheus.NewRegistry()
	r, l := start(t, Config{RetryAfterFailure: 50 * time.Millisecond, Refresh: 100 * time.Millisecond, Registerer: reg})
	uri := iss.URL + "/jwks"
	r.Update(snapshot(t, ra(fmt.Sprintf("  - {issuer: a, jwksUri: %q}\n", uri))))
	eventually(t, "the failure recorded", func() error {
		res, ok := l.get().Lookup("a", uri)
		if !ok || res.JWKS != "" || !strings.Contains(res.Err, "503 Service Unavailable") {
			return fmt.Errorf("result %+v", res)
		}
		return nil
	})
	if f := r.Keys().Failures(); !strings.Contains(f[Source{"a", uri}], "503") {
		t.Errorf("failures %v", f)
	}
	if g := testutil.ToFloat64(r.unavailable); g != 1 {
		t.Errorf("meshlens_jwks_unavailable %v, want 1", g)
	}
	iss.jwks.Store(`{"keys":[]}`) // not a key set: still failing
	eventually(t, "an empty key set refused", func() error {
		if res, _ := l.get().Lookup("a", uri); !strings.Contains(res.Err, "no keys") {
			return fmt.Errorf("result %+v", res)
		}
		return nil
	})
	iss.jwks.Store(keysA)
	eventually(t, "keys fetched once the issuer serves them", func() error {
		if res, _ := l.get().Lookup("a", uri); res.JWKS != keysA || res.Err != "" {
			return fmt.Errorf("result %+v", res)
		}
		return nil
	})
	if g := testutil.ToFloat64(r.unavailable); g != 0 {
		t.Errorf("meshlens_jwks_unavailable %v, want 0", g)
	}
	iss.jwks.Store("500")
	eventually(t, "a later failure keeps the keys", func() error {
		if res, _ := l.get().Lookup("a", uri); res.JWKS != keysA || !strings.Contains(res.Err, "500") {
			return fmt.Errorf("result %+v", res)
		}
		return nil
	})
	if len(r.Keys().Failures()) != 0 {
		t.Errorf("an issuer with keys listed as failing: %v", r.Keys().Failures())
	}
	if ok, errs := testutil.ToFloat64(r.fetches.WithLabelValues("ok")), testutil.ToFloat64(r.fetches.WithLabelValues("error")); ok < 1 || errs < 3 {
		t.Errorf("fetches ok %v error %v", ok, errs)
	}
	// Sources no longer named are forgotten.
	r.Update(snapshot(t, ra("  - {issuer: other, jwks: '"+keysB+"'}\n")))
	if _, ok := r.Keys().Lookup("a", uri); ok {
		t.Error("a removed source is still listed")
	}
}

// A jwksUri (or a discovered one, or a redirect) at a link-local address —
// cloud metadata — is never dialled; neither is an unknown body taken as
// keys.
func TestResolverRefusesLinkLocalAndNonJWKSBodies(t *testing.T) {
	redirect := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/latest/meta-data/", http.StatusFound))
	t.Cleanup(redirect.Close)
	html := newIssuer(t, "<html>not keys</html>")
	r, l := start(t, Config{})
	r.Update(snapshot(t, ra(fmt.Sprintf("  - {issuer: meta, jwksUri: 'http://169.254.169.254/keys'}\n  - {issuer: redir, jwksUri: %q}\n  - {issuer: html, jwksUri: %q}\n",
		redirect.URL+"/keys", html.URL+"/jwks"))))
	eventually(t, "three refusals", func() error {
		k := l.get()
		meta, _ := k.Lookup("meta", "http://169.254.169.254/keys")
		redir, _ := k.Lookup("redir", redirect.URL+"/keys")
		h, _ := k.Lookup("html", html.URL+"/jwks")
		if !strings.Contains(meta.Err, "link-local") || !strings.Contains(redir.Err, "link-local") || !strings.Contains(h.Err, "not a JSON Web Key Set") {
			return fmt.Errorf("meta %q, redirect %q, html %q", meta.Err, redir.Err, h.Err)
		}
		return nil
	})
}

func TestValidateJWKS(t *testing.T) {
	for _, tc := range []struct{ body, err string }{
		{keysA, ""},
		{`{"keys":[]}`, "no keys"},
		{`{"keys":[{"kid":"x"}]}`, "keys[0] has no kty"},
		{`[1,2]`, "not a JSON Web Key Set"},
		{PublicOnly, ""},
	} {
		err := ValidateJWKS([]byte(tc.body))
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: err %v, want %q", tc.body, err, tc.err)
		}
	}
}

// Fetched bodies are untrusted: checking one never panics, and what it
// accepts is a JSON object with keys.
func FuzzValidateJWKS(f *testing.F) {
	for _, s := range []string{keysA, keysB, PublicOnly, `{"keys":[]}`, `{"keys":[{"kty":1}]}`, `null`, `{"keys":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if ValidateJWKS(body) == nil && !strings.Contains(string(body), "keys") {
			t.Fatalf("accepted %q", body)
		}
	})
}
