// Package credentials holds the TLS credentials that Gateway servers name
// (Istio's tls.credentialName, Gateway API's certificateRefs), read from
// Kubernetes Secrets as istiod reads them, in immutable snapshots that the
// xDS server serves over SDS.
//
// A Secret's keys, as Istio accepts them:
//
//   - the certificate chain and its private key: tls.crt and tls.key (a
//     kubernetes.io/tls Secret), or cert and key (an Opaque Secret);
//   - the CA that client certificates must chain to (MUTUAL): ca.crt or
//     cacert, in a Secret NAME-cacert when there is one, else in NAME.
//
// Key material is never logged nor put in errors: errors name the Secret
// and the keys it has.
package credentials

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Keys a Secret's certificate, key and CA are read from, in Istio's order
// of preference.
const (
	TLSCert   = "tls.crt"
	TLSKey    = "tls.key"
	TLSCA     = "ca.crt"
	Cert      = "cert"
	Key       = "key"
	CACert    = "cacert"
	CASuffix  = "-cacert" // a Secret holding only the CA of NAME
	maxSecret = 1 << 20   // Kubernetes' own limit on a Secret's data
)

// ErrNotFound: the Secret does not exist.
var ErrNotFound = errors.New("not found")

// DataKeys are the only data keys meshlens keeps of a Secret.
var DataKeys = []string{TLSCert, TLSKey, TLSCA, Cert, Key, CACert}

// Ref names a Secret.
type Ref struct{ Namespace, Name string }

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Secret is one Secret's credential as parsed: what it holds, or why it
// holds nothing usable.
type Secret struct {
	// Cert and Key are the PEM certificate chain and private key; nil with
	// CertErr saying why.
	Cert, Key []byte
	CertErr   error
	// CA is the PEM CA bundle; nil with CAErr saying why.
	CA    []byte
	CAErr error
	// Version changes whenever the Secret's data does (its resourceVersion).
	Version string
}

// Parse reads a Secret's data as Istio does. It checks that the certificate
// and key are PEM and belong together, and that the CA is PEM certificates;
// errors name the Secret and the keys found, never their values.
func Parse(ref Ref, version string, data map[string][]byte) *Secret {
	s := &Secret{Version: version}
	found := slices.Sorted(maps.Keys(data))
	size := 0
	for _, v := range data {
		size += len(v)
	}
	if size > maxSecret {
		err := fmt.Errorf("secret %s: %d bytes of data, more than %d", ref, size, maxSecret)
		s.CertErr, s.CAErr = err, err
		return s
	}
	certKey, keyKey := "", ""
	switch {
	case len(data[TLSCert]) > 0 && len(data[TLSKey]) > 0:
		certKey, keyKey = TLSCert, TLSKey
	case len(data[Cert]) > 0 && len(data[Key]) > 0:
		certKey, keyKey = Cert, Key
	}
	if certKey == "" {
		s.CertErr = fmt.Errorf("secret %s has neither %s and %s nor %s and %s (it has %s)", ref, TLSCert, TLSKey, Cert, Key, keyList(found))
	} else if _, err := tls.X509KeyPair(data[certKey], data[keyKey]); err != nil {
		// crypto/tls' errors describe the PEM blocks, not their bytes.
		s.CertErr = fmt.Errorf("secret %s: %s and %s are not a PEM certificate and its private key: %w", ref, certKey, keyKey, err)
	} else {
		s.Cert, s.Key = data[certKey], data[keyKey]
	}
	caKey := ""
	switch {
	case len(data[TLSCA]) > 0:
		caKey = TLSCA
	case len(data[CACert]) > 0:
		caKey = CACert
	}
	if caKey == "" {
		s.CAErr = fmt.Errorf("secret %s has neither %s nor %s (it has %s)", ref, TLSCA, CACert, keyList(found))
	} else if !x509.NewCertPool().AppendCertsFromPEM(data[caKey]) {
		s.CAErr = fmt.Errorf("secret %s: %s holds no PEM certificate", ref, caKey)
	} else {
		s.CA = data[caKey]
	}
	return s
}

func keyList(keys []string) string {
	if len(keys) == 0 {
		return "no data"
	}
	return strings.Join(keys, ", ")
}

// Snapshot is the credentials of a cluster at one moment. It is immutable;
// a nil *Snapshot holds nothing.
type Snapshot struct {
	version uint64
	secrets map[Ref]*Secret
}

// New makes a snapshot of parsed Secrets; it keeps the map.
func New(version uint64, secrets map[Ref]*Secret) *Snapshot {
	return &Snapshot{version: version, secrets: secrets}
}

// Version numbers the snapshots of one source.
func (s *Snapshot) Version() uint64 {
	if s == nil {
		return 0
	}
	return s.version
}

// Len is the number of Secrets held.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.secrets)
}

// Equal reports whether two snapshots hold the same Secrets at the same
// versions.
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s.Len() != o.Len() {
		return false
	}
	for r, a := range s.secrets {
		b, ok := o.secrets[r]
		if !ok || a.Version != b.Version {
			return false
		}
	}
	return true
}

// Certificate is the certificate chain and key of Secret ref, or an error
// naming the Secret and why it has none.
func (s *Snapshot) Certificate(ref Ref) (cert, key []byte, version string, err error) {
	sec := s.get(ref)
	if sec == nil {
		return nil, nil, "", fmt.Errorf("secret %s %w", ref, ErrNotFound)
	}
	if sec.CertErr != nil {
		return nil, nil, "", sec.CertErr
	}
	return sec.Cert, sec.Key, sec.Version, nil
}

// CA is the CA bundle for Secret ref's certificate: that of Secret
// NAME-cacert when it exists, else ref's own, as istiod reads it.
func (s *Snapshot) CA(ref Ref) (ca []byte, version string, err error) {
	sec := s.get(Ref{ref.Namespace, ref.Name + CASuffix})
	if sec == nil {
		if sec = s.get(ref); sec == nil {
			return nil, "", fmt.Errorf("secret %s (or %s%s, for the CA) %w", ref, ref, CASuffix, ErrNotFound)
		}
	}
	if sec.CAErr != nil {
		return nil, "", sec.CAErr
	}
	return sec.CA, sec.Version, nil
}

func (s *Snapshot) get(ref Ref) *Secret {
	if s == nil {
		return nil
	}
	return s.secrets[ref]
}

// Check says why Secret ref cannot serve a gateway server: missing
// (ErrNotFound), no certificate and key, or, with needCA (MUTUAL), no CA.
func (s *Snapshot) Check(ref Ref, needCA bool) error {
	if _, _, _, err := s.Certificate(ref); err != nil {
		return err
	}
	if needCA {
		if _, _, err := s.CA(ref); err != nil {
			return fmt.Errorf("the CA of client certificates: %w", err)
		}
	}
	return nil
}
