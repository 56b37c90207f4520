package demo

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestParseFaultFlag(t *testing.T) {
	tests := []struct {
		in      string
		slow    bool
		want    Fault
		wantKey VersionKey
		wantErr string
	}{
		{in: "reviews:v3=0.5", want: Fault{ErrorRate: 0.5}, wantKey: VersionKey{"reviews", "v3"}},
		{in: " reviews:v3 = 1 ", want: Fault{ErrorRate: 1}, wantKey: VersionKey{"reviews", "v3"}},
		{in: "reviews:v2=300ms", slow: true, want: Fault{Delay: 300 * time.Millisecond}, wantKey: VersionKey{"reviews", "v2"}},
		{in: "reviews:v3=1.5", wantErr: "between 0 and 1"},
		{in: "reviews:v3=-0.1", wantErr: "between 0 and 1"},
		{in: "reviews:v3=half", wantErr: "error rate"},
		{in: "reviews:v3=NaN", wantErr: "between 0 and 1"},
		{in: "reviews:v2=-1s", slow: true, wantErr: "negative"},
		{in: "reviews:v2=0.5", slow: true, wantErr: "delay"},
		{in: "reviews=0.5", wantErr: "SERVICE:VERSION"},
		{in: ":v3=0.5", wantErr: "SERVICE:VERSION"},
		{in: "reviews:v3", wantErr: "SERVICE:VERSION=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, f, err := ParseFaultFlag(tt.in, tt.slow)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k != tt.wantKey || f != tt.want {
				t.Fatalf("got %v %+v, want %v %+v", k, f, tt.wantKey, tt.want)
			}
		})
	}
}

func FuzzParseFaultFlag(f *testing.F) {
	for _, s := range []string{"reviews:v3=0.5", "reviews:v2=300ms", "a:b=", "=", ":=1", "x:y=NaN", "x:y=1e309", "x:y=-0"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, slow bool) {
		k, fault, err := ParseFaultFlag(s, slow)
		if err != nil {
			return
		}
		if k.Service == "" || k.Version == "" {
			t.Fatalf("%q accepted with an empty service or version: %v", s, k)
		}
		if !(fault.ErrorRate >= 0 && fault.ErrorRate <= 1) || fault.Delay < 0 {
			t.Fatalf("%q accepted an out-of-range fault %+v", s, fault)
		}
		if verr := fault.Validate(); verr != nil {
			t.Fatalf("%q accepted an invalid fault %+v: %v", s, fault, verr)
		}
	})
}

func TestIstioConfigRefusesABadSplit(t *testing.T) {
	var eps []Endpoint
	for i, in := range Bookinfo() {
		eps = append(eps, Endpoint{Instance: in, Port: 9081 + i})
	}
	tests := []struct {
		name    string
		split   map[string]uint32
		wantErr string
	}{
		{"weights must sum to 100", map[string]uint32{"v1": 50, "v2": 30}, "sum to 80"},
		{"versions must exist", map[string]uint32{"v1": 50, "v4": 50}, `"v4"`},
		{"a full split is rendered", map[string]uint32{"v1": 50, "v2": 30, "v3": 20}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y, err := IstioConfig("bookinfo", 9080, eps, tt.split)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			docs := strings.Split(string(y), "\n---\n")
			if len(docs) != 4+6+4+1 {
				t.Fatalf("%d documents, want 15", len(docs))
			}
			var vs struct {
				Kind string
				Spec struct {
					HTTP []struct {
						Route []struct{ Weight uint32 }
					}
				}
			}
			if err := yaml.Unmarshal([]byte(docs[len(docs)-1]), &vs); err != nil {
				t.Fatal(err)
			}
			var sum uint32
			for _, r := range vs.Spec.HTTP[0].Route {
				sum += r.Weight
			}
			if vs.Kind != "VirtualService" || sum != 100 {
				t.Fatalf("last document %s with weights summing to %d", vs.Kind, sum)
			}
		})
	}
}
