package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/oidctest"
)

// While an issuer's keys cannot be fetched, GET /api/v1/analysis names
// the RequestAuthentication, the field, the issuer, the URL and the last
// error, and says that the issuer's tokens are refused; once its keys
// are fetched the finding is gone. The issuer is a real OpenID provider
// on loopback whose key endpoint fails, then recovers.
func TestAnalysisSaysWhichIssuerKeysCannotBeFetchedUntilTheyAre(t *testing.T) {
	iss := oidctest.New(t)
	iss.FailKeys(true)
	r, _ := start(t, Config{RetryAfterFailure: 50 * time.Millisecond, Refresh: time.Hour})
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{JWKSUnavailable: func(issuer, uri string) (string, string, bool) {
		return r.Keys().Unavailable(issuer, uri)
	}})...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(t.TempDir(), kinds, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Subscribe(r.Update))
	e := echo.New()
	config.RegisterRoutes(e.Group("/api/v1"), store, func(next echo.HandlerFunc) echo.HandlerFunc { return next })
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	keysURL := iss.URL + "/keys"
	objs, err := kinds.Parse([]byte(fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - {issuer: %q, jwksUri: %q}
`, iss.URL, keysURL)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Apply(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	analysis := func() []config.Warning {
		t.Helper()
		resp, err := http.Get(srv.URL + "/api/v1/analysis")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body config.AnalysisResponse
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		var out []config.Warning
		for _, w := range body.Warnings {
			if w.Code == config.CodeJWKSUnavailable {
				out = append(out, w)
			}
		}
		return out
	}
	eventually(t, "the analysis names the issuer whose keys fail", func() error {
		ws := analysis()
		if len(ws) != 1 {
			return fmt.Errorf("want one %s finding, got %+v", config.CodeJWKSUnavailable, ws)
		}
		w := ws[0]
		for _, want := range []string{fmt.Sprintf("%q", iss.URL), keysURL, "503 Service Unavailable", "tokens of this issuer are refused until its keys are fetched"} {
			if !strings.Contains(w.Message, want) {
				return fmt.Errorf("message %q lacks %q", w.Message, want)
			}
		}
		if w.Object != "RequestAuthentication/default/reviews" || w.Field != "jwtRules[0].jwksUri" {
			return fmt.Errorf("finding on %s %s, want RequestAuthentication/default/reviews jwtRules[0].jwksUri", w.Object, w.Field)
		}
		return nil
	})

	iss.FailKeys(false)
	eventually(t, "the finding is gone once the keys are fetched", func() error {
		if ws := analysis(); len(ws) != 0 {
			return fmt.Errorf("still %+v", ws)
		}
		if _, _, failing := r.Keys().Unavailable(iss.URL, keysURL); failing {
			return fmt.Errorf("the resolver still has no keys")
		}
		return nil
	})
}
