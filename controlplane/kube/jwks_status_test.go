package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/internal/oidctest"
)

// A RequestAuthentication applied with kubectl whose issuer's keys cannot
// be fetched gets the finding in its status (validationMessages, as Istio
// writes analysis there) and a Warning event naming the issuer, the URL
// and the error; once the issuer serves its keys the finding leaves the
// status, though the object did not change. The issuer is a real OpenID
// provider on loopback that fails, then recovers.
func TestRequestAuthenticationStatusSaysItsIssuerKeysCannotBeFetchedUntilTheyAre(t *testing.T) {
	c := kubetest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	const ns = "jwks-status"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	iss := oidctest.New(t)
	iss.FailKeys(true)

	// meshlens serve's wiring of these parts (app.New): the analysis asks
	// the resolver, and every change of keys resyncs the statuses.
	logger := meshtest.Logger(t)
	var src *ConfigSource
	resolver, err := jwks.New(jwks.Config{RetryAfterFailure: 50 * time.Millisecond, Refresh: time.Hour, Logger: logger,
		OnChange: func(*jwks.Keys) {
			if src != nil {
				src.Resync()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{JWKSUnavailable: func(issuer, uri string) (string, string, bool) {
		return resolver.Keys().Unavailable(issuer, uri)
	}})...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(t.TempDir(), kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	health, err := NewHealth(c.Client, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if src, err = NewConfigSource(c.Client, ic, c.Dynamic, store, health, logger, nil); err != nil {
		t.Fatal(err)
	}
	unsubscribe := store.Subscribe(resolver.Update)
	var done []chan struct{}
	for _, run := range []func(context.Context) error{health.Run, src.Run, resolver.Run} {
		d := make(chan struct{})
		done = append(done, d)
		go func() { defer close(d); _ = run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		unsubscribe()
		for _, d := range done {
			<-d
		}
	})

	keysURL := iss.URL + "/keys"
	if err := c.Apply(ctx, ns, fmt.Appendf(nil, `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: reviews, namespace: %s}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - {issuer: %q, jwksUri: %q}
`, ns, iss.URL, keysURL)); err != nil {
		t.Fatal(err)
	}
	raGVR := schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "requestauthentications"}
	status := func() (string, error) {
		u, err := c.Dynamic.Resource(raGVR).Namespace(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(u.Object["status"])
		return string(b), err
	}
	const finding = `{"code":"` + config.CodeJWKSUnavailable + `","name":"JwksUnavailable"}`
	meshtest.Eventually(t, 30*time.Second, "the status has the finding", func() error {
		s, err := status()
		if err != nil {
			return err
		}
		if !strings.Contains(s, finding) || !strings.Contains(s, `"status":"True"`) {
			return fmt.Errorf("status %s: want Accepted and validationMessages with %s", s, finding)
		}
		return nil
	})
	meshtest.Eventually(t, 30*time.Second, "a Warning event says which issuer, where and why", func() error {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "reviews" && e.Type == corev1.EventTypeWarning && e.Reason == "JwksUnavailable" &&
				strings.Contains(e.Message, iss.URL) && strings.Contains(e.Message, keysURL) && strings.Contains(e.Message, "503") &&
				strings.Contains(e.Message, "tokens of this issuer are refused until its keys are fetched") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none a JwksUnavailable warning on reviews naming %s", len(evs.Items), keysURL)
	})

	iss.FailKeys(false)
	meshtest.Eventually(t, 30*time.Second, "the finding leaves the status once the keys are fetched", func() error {
		s, err := status()
		if err != nil {
			return err
		}
		if strings.Contains(s, config.CodeJWKSUnavailable) || !strings.Contains(s, `"status":"True"`) {
			return fmt.Errorf("status %s", s)
		}
		return nil
	})
}
