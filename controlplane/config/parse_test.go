package config

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1"
)

func TestParseAcceptsEveryDocumentForm(t *testing.T) {
	const se = `{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"%s"},"spec":{"hosts":["a"],"ports":[{"number":80,"name":"h"}]}}`
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"yaml stream with comments and empty documents", "# top\n---\n" + yamlSE("a") + "--- # second\n" + yamlSE("b") + "---\n", []string{"a", "b"}},
		{"json object indented with tabs", "{\n\t\"apiVersion\": \"networking.istio.io/v1\",\n\t\"kind\": \"ServiceEntry\",\n\t\"metadata\": {\"name\": \"a\"},\n\t\"spec\": {\"hosts\": [\"a\"]}\n}", []string{"a"}},
		{"json array", "[" + strings.ReplaceAll(se, "%s", "a") + "," + strings.ReplaceAll(se, "%s", "b") + "]", []string{"a", "b"}},
		{"kind List", "kind: List\nitems:\n- " + strings.ReplaceAll(se, "%s", "a") + "\n", []string{"a"}},
		{"kubectl output with status and server metadata", yamlSE("a") + "  uid: 1234\n  resourceVersion: \"7\"\nstatus: {}\n", []string{"a"}},
	}
	k := testKinds(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := k.Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Meta.Name)
				if o.Meta.Namespace != DefaultNamespace {
					t.Errorf("%s: namespace %q, want default", o.Meta.Name, o.Meta.Namespace)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func yamlSE(name string) string {
	return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: {hosts: [a]}\nmetadata:\n  name: " + name + "\n"
}

func TestDurationsAcceptGoAndProtoForms(t *testing.T) {
	k := testKinds(t)
	for in, want := range map[string]time.Duration{"250ms": 250 * time.Millisecond, "1.5s": 1500 * time.Millisecond, "2m": 2 * time.Minute, "1h30m": 90 * time.Minute} {
		objs, err := k.Parse([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - timeout: " + in + "\n    route: [{destination: {host: a}}]\n"))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := objs[0].Spec.(*networking.VirtualService).GetHttp()[0].GetTimeout().AsDuration(); got != want {
			t.Errorf("timeout %s decoded as %v, want %v", in, got, want)
		}
	}
}
