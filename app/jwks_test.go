package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/app/apptest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/internal/oidctest"
)

// meshlens serve wires the JWKS resolver into analysis: a
// RequestAuthentication whose issuer's keys cannot be fetched is named in
// GET /api/v1/analysis with the issuer, the URL and the error. (That the
// finding goes once the keys are fetched, a minute later here, is
// TestAnalysisSaysWhichIssuerKeysCannotBeFetchedUntilTheyAre in
// controlplane/jwks, with a short retry.)
func TestServeAnalysisNamesIssuerWhoseKeysCannotBeFetched(t *testing.T) {
	iss := oidctest.New(t)
	iss.FailKeys(true)
	s := apptest.Start(t)
	applyWarnings(t, s, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: %q}]
`, iss.URL))
	discovery := iss.URL + "/.well-known/openid-configuration"
	meshtest.Eventually(t, 30*time.Second, "GET /api/v1/analysis names the issuer", func() error {
		code, body := meshtest.HTTP(t, "GET", s.URL+"/api/v1/analysis", s.Token(t), "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		for _, want := range []string{`"code":"ML0001"`, `"object":"RequestAuthentication/default/reviews"`, `"field":"jwtRules[0].issuer"`,
			discovery, iss.URL + "/keys", "503 Service Unavailable", "tokens of this issuer are refused until its keys are fetched"} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("no %s in %s", want, body)
			}
		}
		return nil
	})
}
