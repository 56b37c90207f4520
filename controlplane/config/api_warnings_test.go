package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// Cross-object findings come back as warnings in the 200 answers of apply,
// dry run and delete, and GET /analysis lists every finding on the running
// config.
func TestAPIWarningsAndAnalysis(t *testing.T) {
	s := openStore(t, t.TempDir())
	api := newAPI(t, s, false)
	// Istio's Bookinfo route: reviews is a Kubernetes Service, which this
	// store (no registry) does not know.
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
	type answer struct {
		Version      uint64   `json:"version"`
		DryRun       bool     `json:"dryRun"`
		Warnings     Warnings `json:"warnings"`
		WarningCount int      `json:"warningCount"`
	}
	for _, path := range []string{"/config?dryRun=true", "/config"} {
		code, body := call(t, "POST", api+path, operatorToken, vs)
		var a answer
		if code != 200 || json.Unmarshal(body, &a) != nil {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
		if a.WarningCount != 1 || len(a.Warnings) != 1 || a.Warnings[0].Code != CodeReferencedResourceNotFound ||
			a.Warnings[0].Object != "VirtualService/default/reviews" || a.Warnings[0].Field != "http[0].route[0].destination.host" {
			t.Fatalf("POST %s warnings: %s", path, body)
		}
	}
	if s.Snapshot().Get(KindVirtualService, "default", "reviews") == nil {
		t.Fatal("the VirtualService was not applied")
	}

	// Defining the host makes the route's subset checkable: the change's
	// answer names the finding it causes on the VirtualService.
	se := `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"reviews","namespace":"default"},"spec":{"hosts":["reviews"],"resolution":"DNS","ports":[{"number":80,"name":"http"}]}}`
	code, body := call(t, "POST", api+"/config", operatorToken, se)
	var a answer
	if code != 200 || json.Unmarshal(body, &a) != nil || a.WarningCount != 1 || a.Warnings[0].Field != "http[0].route[0].destination.subset" {
		t.Fatalf("apply ServiceEntry: %d %s", code, body)
	}
	code, body = call(t, "GET", api+"/analysis", "", "")
	var an AnalysisResponse
	if code != 200 || json.Unmarshal(body, &an) != nil || an.Version != s.Snapshot().Version {
		t.Fatalf("GET /analysis: %d %s", code, body)
	}
	if len(an.Warnings) != 1 || an.Warnings[0].Object != "VirtualService/default/reviews" || !strings.Contains(an.Warnings[0].Message, `"reviews.default.svc.cluster.local+v1"`) {
		t.Fatalf("analysis: %s", body)
	}

	// The DestinationRule clears it: "warnings": [] (not null), and the
	// analysis is empty.
	dr := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n"
	code, body = call(t, "POST", api+"/config", operatorToken, dr)
	if code != 200 || !strings.Contains(string(body), `"warnings":[]`) || !strings.Contains(string(body), `"warningCount":0`) {
		t.Fatalf("clean apply: %d %s", code, body)
	}
	code, body = call(t, "GET", api+"/analysis", "", "")
	if code != 200 || !strings.Contains(string(body), `"warnings":[]`) {
		t.Fatalf("GET /analysis of a clean config: %d %s", code, body)
	}

	// Deleting the ServiceEntry is allowed and says what it leaves dangling.
	code, body = call(t, "DELETE", api+"/config/se/default/reviews", operatorToken, "")
	var del answer
	if code != 200 || json.Unmarshal(body, &del) != nil || del.WarningCount != 2 || del.Warnings[0].Object != "DestinationRule/default/reviews" || del.Warnings[1].Field != "http[0].route[0].destination.host" {
		t.Fatalf("delete: %d %s", code, body)
	}
}

// The API answers a body of a million broken objects with the first
// MaxReportedErrors errors and their count.
func TestAPIErrorsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("parses a million objects")
	}
	s := openStore(t, t.TempDir())
	api := newAPI(t, s, false)
	in := hugeBadInputs()[0]
	code, body := call(t, "POST", api+"/config", operatorToken, string(in.data))
	var er ErrorsResponse
	if code != 400 || json.Unmarshal(body, &er) != nil {
		t.Fatalf("POST: %d %.300s", code, body)
	}
	if len(er.Errors) != MaxReportedErrors || er.ErrorCount != 2*in.objects {
		t.Fatalf("%d errors listed, errorCount %d; want %d and %d", len(er.Errors), er.ErrorCount, MaxReportedErrors, 2*in.objects)
	}
	if len(body) > 64<<10 {
		t.Fatalf("answer is %d bytes", len(body))
	}
}
