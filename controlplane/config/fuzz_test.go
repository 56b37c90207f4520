package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser (the REST body and config
// dir files are untrusted). It must not panic; anything it accepts must
// validate without panicking and survive a JSON round trip unchanged.
// The seeds are whole config files, so run it with a bounded minimization
// (go test -fuzz FuzzParse -fuzzminimizetime 200x); the default 60s per
// new input leaves almost no time to fuzz.
func FuzzParse(f *testing.F) {
	for _, name := range exampleFiles {
		f.Add(readExample(f, name))
	}
	invalid, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, p := range invalid {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a"},"spec":{"hosts":["a"],"ports":[{"number":80,"name":"h"}]}}]`))
	f.Add([]byte("kind: List\nitems:\n- kind: WorkloadEntry\n  apiVersion: networking.istio.io/v1\n  metadata: {name: w}\n  spec: {address: 1.2.3.4}\n"))
	f.Add([]byte("--- \n--- {}\n---\nnull\n"))
	f.Add([]byte(`{"kind":"VirtualService","apiVersion":"networking.istio.io/v1","metadata":{"name":"x"},"spec":{"http":[{"timeout":"-2562047h47m16.854775808s","route":[{"weight":"1e3"}]}]}}`))
	k := testKinds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := k.Parse(data)
		if err != nil {
			if _, ok := err.(FieldErrors); !ok {
				t.Fatalf("error %T is not FieldErrors", err)
			}
			return
		}
		_, _ = k.Validate(nil, objs)
		for _, o := range objs {
			if o.Kind == "" || o.Meta.Name == "" || o.Meta.Namespace == "" || o.Spec == nil {
				t.Fatalf("accepted incomplete object %+v", o)
			}
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("marshal %s: %v", o.Key(), err)
			}
			again, err := k.Parse(b)
			if err != nil {
				t.Fatalf("%s does not re-parse: %v\n%s", o.Key(), err, b)
			}
			if len(again) != 1 || !sameObject(o, again[0]) {
				t.Fatalf("%s changed in a round trip:\n%s", o.Key(), b)
			}
		}
	})
}
