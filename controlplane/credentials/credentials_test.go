package credentials

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "xds", "testdata", "credentials", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Istio's keys: a kubernetes.io/tls Secret's tls.crt/tls.key, an Opaque
// Secret's cert/key; the CA from NAME-cacert, else NAME; errors name the
// Secret and the keys it has, and never a key's value.
func TestSecretsReadAsIstioReadsThem(t *testing.T) {
	crt, key, ca := read(t, "tls.crt"), read(t, "tls.key"), read(t, "ca.crt")
	ref := func(n string) Ref { return Ref{"gw", n} }
	secrets := map[Ref]*Secret{}
	for name, data := range map[string]map[string][]byte{
		"tls":          {TLSCert: crt, TLSKey: key, TLSCA: ca},
		"opaque":       {Cert: crt, Key: key, CACert: ca},
		"split":        {TLSCert: crt, TLSKey: key},
		"split-cacert": {CACert: ca},
		"nokey":        {TLSCert: crt},
		"mismatch":     {TLSCert: ca, TLSKey: key},
		"badca":        {TLSCert: crt, TLSKey: key, TLSCA: []byte("not pem")},
	} {
		secrets[ref(name)] = Parse(ref(name), "1", data)
	}
	sn := New(1, secrets)
	for _, name := range []string{"tls", "opaque", "split"} {
		c, k, _, err := sn.Certificate(ref(name))
		if err != nil || string(c) != string(crt) || string(k) != string(key) {
			t.Errorf("%s: certificate %d bytes, key %d bytes, err %v", name, len(c), len(k), err)
		}
		got, _, err := sn.CA(ref(name))
		if err != nil || string(got) != string(ca) {
			t.Errorf("%s: CA %d bytes, err %v", name, len(got), err)
		}
	}
	for name, want := range map[string]string{
		"nokey":    "secret gw/nokey has neither tls.crt and tls.key nor cert and key (it has tls.crt)",
		"mismatch": "secret gw/mismatch: tls.crt and tls.key are not a PEM certificate and its private key",
		"missing":  "secret gw/missing not found",
	} {
		_, _, _, err := sn.Certificate(ref(name))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: the error holds key material: %v", name, err)
		}
	}
	if _, _, err := sn.CA(ref("badca")); err == nil || !strings.Contains(err.Error(), "secret gw/badca: ca.crt holds no PEM certificate") {
		t.Errorf("badca: %v", err)
	}
	if _, _, err := sn.CA(ref("missing")); err == nil || !strings.Contains(err.Error(), "secret gw/missing (or gw/missing-cacert, for the CA) not found") {
		t.Errorf("missing CA: %v", err)
	}
	if err := sn.Check(ref("missing"), false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Check of a missing Secret: %v, want ErrNotFound", err)
	}
	if err := sn.Check(ref("nokey"), false); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Check of a Secret without a key: %v", err)
	}
	if err := sn.Check(ref("badca"), true); err == nil || sn.Check(ref("badca"), false) != nil || sn.Check(ref("split"), true) != nil {
		t.Errorf("Check with and without the CA: %v", err)
	}
	if !sn.Equal(New(2, secrets)) || sn.Equal(New(2, map[Ref]*Secret{ref("tls"): secrets[ref("tls")]})) {
		t.Error("Equal compares the Secrets held and their versions")
	}
}

// FuzzParse: Secret data is the cluster's, anyone's with create on
// secrets: parsing never panics, an accepted certificate has its key, and
// no error quotes the data.
func FuzzParse(f *testing.F) {
	f.Add([]byte(read(f, "tls.crt")), []byte(read(f, "tls.key")), []byte(read(f, "ca.crt")))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("x"), []byte(""))
	f.Fuzz(func(t *testing.T, crt, key, ca []byte) {
		s := Parse(Ref{"ns", "n"}, "1", map[string][]byte{TLSCert: crt, TLSKey: key, CACert: ca})
		if (s.Cert == nil) == (s.CertErr == nil) || (s.Key == nil) != (s.Cert == nil) {
			t.Fatalf("cert %v key %v err %v", s.Cert != nil, s.Key != nil, s.CertErr)
		}
		for _, err := range []error{s.CertErr, s.CAErr} {
			if err != nil && len(key) > 8 && strings.Contains(err.Error(), string(key)) {
				t.Fatalf("error quotes the key: %v", err)
			}
		}
	})
}
