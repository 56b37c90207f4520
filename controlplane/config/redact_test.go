package config

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// secretSpec is the spec of a test kind holding one secret.
type secretSpec struct {
	Token string `json:"token,omitempty"`
	Note  string `json:"note,omitempty"`
}

func secretKind() KindSpec {
	return KindSpec{
		APIVersions: []string{"test.meshlens.io/v1"},
		Kind:        "Secretive",
		Decode: func(js []byte) (any, error) {
			var s secretSpec
			if err := DecodeJSON(js, &s); err != nil {
				return nil, err
			}
			return &s, nil
		},
		Redact: func(spec any) any {
			s := *spec.(*secretSpec)
			if s.Token != "" {
				s.Token = Redacted
			}
			return &s
		},
		Unredact: func(spec, stored any) (any, []FieldError) {
			s := spec.(*secretSpec)
			if s.Token != Redacted {
				return spec, nil
			}
			st, ok := stored.(*secretSpec)
			if !ok || st.Token == "" {
				return spec, []FieldError{{Field: "token", Message: "give the token again"}}
			}
			cp := *s
			cp.Token = st.Token
			return &cp, nil
		},
	}
}

func secretStore(t *testing.T) *Store {
	t.Helper()
	k, err := NewKinds(append(IstioKinds(IstioOptions{}), secretKind())...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.TempDir(), k, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func secretDoc(name, token, note string) string {
	return `{"apiVersion":"test.meshlens.io/v1","kind":"Secretive","metadata":{"name":"` + name + `","namespace":"default"},"spec":{"token":"` + token + `","note":"` + note + `"}}`
}

func TestNewKindsRefusesRedactWithoutUnredact(t *testing.T) {
	k := secretKind()
	k.Unredact = nil
	if _, err := NewKinds(k); err == nil || !strings.Contains(err.Error(), "Redact and Unredact") {
		t.Fatalf("NewKinds with Redact alone: %v", err)
	}
}

// Reads show secrets as Redacted to every token, through real HTTP and
// auth, and leave the stored, shared snapshot as it was.
func TestAPIReadsShowSecretsRedactedAndLeaveTheStoreAlone(t *testing.T) {
	const token = "tok-9c1e-real"
	s := secretStore(t)
	api := newAPI(t, s, true)
	if code, body := call(t, "POST", api+"/config", operatorToken, secretDoc("a", token, "n")); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	stored := s.Snapshot().Get("Secretive", "default", "a")
	for _, path := range []string{"/config/secretive/default/a", "/config?kind=secretive", "/config"} {
		for _, tok := range []string{viewerToken, operatorToken} {
			code, body := call(t, "GET", api+path, tok, "")
			if code != 200 {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			if strings.Contains(string(body), token) {
				t.Fatalf("GET %s shows the secret: %s", path, body)
			}
			var spec struct{ Spec secretSpec }
			var list struct{ Items []json.RawMessage }
			if path != "/config/secretive/default/a" {
				if json.Unmarshal(body, &list) != nil || len(list.Items) != 1 {
					t.Fatalf("GET %s: %s", path, body)
				}
				body = list.Items[0]
			}
			if err := json.Unmarshal(body, &spec); err != nil || spec.Spec.Token != Redacted || spec.Spec.Note != "n" {
				t.Fatalf("GET %s: want the token shown as %s (%v): %s", path, Redacted, err, body)
			}
		}
	}
	if got := s.Snapshot().Get("Secretive", "default", "a"); got != stored || got.Spec.(*secretSpec).Token != token {
		t.Fatalf("reads changed the stored object: %+v", got.Spec)
	}
	if code, _ := call(t, "GET", api+"/config/secretive/default/a", "", ""); code != 401 {
		t.Fatalf("GET without a token: %d, want 401", code)
	}
}

// Applying what GET showed keeps the stored secret; a Redacted value with
// nothing stored to restore it from is refused naming the field, never
// stored as the literal string.
func TestApplyOfRedactedSecretKeepsTheStoredOne(t *testing.T) {
	const token = "tok-3f0a-real"
	s := secretStore(t)
	apply := func(doc string, dry bool) error {
		objs, err := s.Kinds().Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if dry {
			_, err := s.Check(objs)
			return err
		}
		_, _, err = s.Apply(context.Background(), objs)
		if strings.Contains(doc, Redacted) && objs[0].Spec.(*secretSpec).Token != Redacted {
			t.Fatal("Apply modified the objects it was given")
		}
		return err
	}
	if err := apply(secretDoc("a", token, "one"), false); err != nil {
		t.Fatal(err)
	}
	v := s.Snapshot().Version
	for _, tc := range []struct {
		name, doc   string
		dry         bool
		wantField   string // "" for accepted
		wantVersion uint64
		wantNote    string
	}{
		{"dry run of the read object is accepted", secretDoc("a", Redacted, "one"), true, "", v, "one"},
		{"the read object applied back changes nothing", secretDoc("a", Redacted, "one"), false, "", v, "one"},
		{"an edited read object keeps the secret", secretDoc("a", Redacted, "two"), false, "", v + 1, "two"},
		{"a new object cannot take a redacted secret", secretDoc("b", Redacted, "x"), false, "token", v + 1, "two"},
		{"nor in a dry run", secretDoc("b", Redacted, "x"), true, "token", v + 1, "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apply(tc.doc, tc.dry)
			var fe FieldErrors
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantField != "" && (!errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != tc.wantField || fe[0].Object != "Secretive/default/b"):
				t.Fatalf("want one error on %s, got %v", tc.wantField, err)
			}
			sn := s.Snapshot()
			got := sn.Get("Secretive", "default", "a").Spec.(*secretSpec)
			if sn.Version != tc.wantVersion || got.Token != token || got.Note != tc.wantNote {
				t.Fatalf("version %d (want %d), stored %+v", sn.Version, tc.wantVersion, got)
			}
			if sn.Get("Secretive", "default", "b") != nil {
				t.Fatal("an object with a redacted secret was stored")
			}
		})
	}
	// A restart reads the real secret back.
	s2, err := Open(filepath.Dir(s.path), s.Kinds(), testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.Snapshot().Get("Secretive", "default", "a").Spec.(*secretSpec); got.Token != token {
		t.Fatalf("after reopening: %+v", got)
	}
}

// The config dir goes through the same door: a file holding what GET
// showed keeps the secret the store has for that object, and with none
// stored the dir is refused naming the file and the field.
func TestConfigDirWithRedactedSecret(t *testing.T) {
	const token = "tok-dir-11"
	ctx := context.Background()
	s := secretStore(t)
	objs, err := s.Kinds().Parse([]byte(secretDoc("a", token, "api")))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), secretDoc("a", Redacted, "dir"))
	if _, _, err := NewDirSource(dir, s, testLogger()).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got := s.Snapshot().Get("Secretive", "default", "a").Spec.(*secretSpec)
	if got.Token != token || got.Note != "dir" || s.Origin("Secretive", "default", "a") != "dir:a.json" {
		t.Fatalf("after the dir took the object over: %+v", got)
	}

	fresh := secretStore(t)
	_, _, err = NewDirSource(dir, fresh, testLogger()).Sync(ctx)
	var de *DirError
	if !errors.As(err, &de) || len(de.Errors) != 1 || de.Errors[0].File != "a.json" || de.Errors[0].Field != "token" {
		t.Fatalf("dir with a redacted secret and nothing stored: %v", err)
	}
	if fresh.Snapshot().Get("Secretive", "default", "a") != nil {
		t.Fatal("a redacted secret was stored")
	}
}
