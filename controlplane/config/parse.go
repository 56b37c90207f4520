package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultNamespace is the namespace of an object that names none.
const DefaultNamespace = "default"

// MaxDocumentBytes bounds one parse call: config is small, and the REST API
// and config dir must not let one request or file exhaust memory.
const MaxDocumentBytes = 8 << 20

// Parse reads Kubernetes-style objects from multi-document YAML, a JSON
// object, a JSON array of objects, or a "kind: List" with items. Every
// document is parsed even after an error so the caller sees all problems
// at once; any error means no object should be used. The error is
// FieldErrors, or *TooManyErrors past MaxReportedErrors. Memory beyond the
// input stays bounded however many documents are broken: documents and
// array items are read one at a time, objects are dropped at the first
// error, and only the first MaxReportedErrors errors are kept.
func (k *Kinds) Parse(data []byte) ([]*Object, error) {
	objs, _, err := k.parse(data, false)
	return objs, err
}

// ParseSkippingUnsupported is Parse, except that objects of kinds this
// registry does not serve (EnvoyFilter, WasmPlugin, ProxyConfig...) are
// left out and listed in skipped instead of refusing the whole input:
// `meshlens apply --skip-unsupported`. A kind that differs from a served
// one only in case is still an error, being a typo rather than another
// product's kind.
func (k *Kinds) ParseSkippingUnsupported(data []byte) (objs []*Object, skipped []ObjectRef, err error) {
	return k.parse(data, true)
}

func (k *Kinds) parse(data []byte, skipUnsupported bool) ([]*Object, []ObjectRef, error) {
	if len(data) > MaxDocumentBytes {
		return nil, nil, FieldErrors{{Message: fmt.Sprintf("config is %d bytes, more than the limit of %d", len(data), MaxDocumentBytes)}}
	}
	p := &parser{kinds: k, skipUnsupported: skipUnsupported}
	i := 0
	for doc := range documents(data) {
		i++
		docName := "document " + strconv.Itoa(i)
		js, err := toJSON(doc)
		if err != nil {
			p.fail(FieldError{Object: docName, Message: "not valid YAML or JSON: " + err.Error()})
			continue
		}
		js = bytes.TrimSpace(js)
		if len(js) == 0 || string(js) == "null" {
			continue // a document of only comments
		}
		p.value(docName, js, 0)
	}
	if err := p.errs.err(false); err != nil {
		return nil, nil, err
	}
	return p.objs, p.skipped, nil
}

// parser holds one Parse call's results.
type parser struct {
	kinds *Kinds
	objs  []*Object
	errs  errorList
	// skipUnsupported leaves out objects of kinds the registry does not
	// serve, listing them in skipped.
	skipUnsupported bool
	skipped         []ObjectRef
}

// fail records errors; from the first one on, objects are no longer kept.
func (p *parser) fail(es ...FieldError) {
	p.errs.add(es...)
	p.objs = nil
}

func (p *parser) keep(o *Object) {
	if p.errs.total == 0 {
		p.objs = append(p.objs, o)
	}
}

// toJSON converts one document to JSON. JSON documents are used as they
// are: JSON is YAML, but pretty-printed JSON indented with tabs is not.
func toJSON(doc []byte) ([]byte, error) {
	if t := bytes.TrimSpace(doc); len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t) {
		return t, nil
	}
	return yaml.YAMLToJSON(doc)
}

// value parses one JSON document: an object, an array of objects, or a
// List. depth bounds nesting of lists so hostile input cannot recurse deeply.
func (p *parser) value(docName string, js []byte, depth int) {
	if depth > 2 {
		p.fail(FieldError{Object: docName, Message: "lists nested too deeply"})
		return
	}
	if js[0] == '[' {
		p.array(docName, js, depth)
		return
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		p.fail(FieldError{Object: docName, Message: "not an object: " + err.Error()})
		return
	}
	var kind string
	if raw, ok := top["kind"]; ok {
		_ = json.Unmarshal(raw, &kind)
	}
	if kind == "List" {
		items, ok := top["items"]
		if !ok {
			p.fail(FieldError{Object: docName, Field: "items", Message: "a List needs items"})
			return
		}
		p.value(docName, bytes.TrimSpace(items), depth+1)
		return
	}
	if p.skipUnsupported && kind != "" {
		var apiVersion string
		_ = json.Unmarshal(top["apiVersion"], &apiVersion)
		if !p.kinds.serves(kind, apiVersion) {
			p.skipped = append(p.skipped, skippedRef(kind, top))
			return
		}
	}
	o, errs := p.kinds.parseObject(docName, top)
	if len(errs) > 0 {
		p.fail(errs...)
		return
	}
	p.keep(o)
}

// array parses a JSON array item by item, so that a huge array of broken
// items never exists in memory as a whole.
func (p *parser) array(docName string, js []byte, depth int) {
	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil { // the '['
		p.fail(FieldError{Object: docName, Message: "not a JSON array of objects: " + err.Error()})
		return
	}
	for i := 0; dec.More(); i++ {
		var item json.RawMessage
		if err := dec.Decode(&item); err != nil {
			p.fail(FieldError{Object: docName, Message: "not a JSON array of objects: " + err.Error()})
			return
		}
		p.value(docName+" item "+strconv.Itoa(i), item, depth+1)
	}
}

// envelopeIgnored are top-level fields Kubernetes adds that carry no config;
// accepting them lets `kubectl get -o yaml` output be applied as is.
var envelopeIgnored = map[string]bool{"status": true}

// metadataIgnored are ObjectMeta fields that Kubernetes owns; see envelopeIgnored.
var metadataIgnored = map[string]bool{
	"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true,
	"managedFields": true, "selfLink": true, "deletionTimestamp": true,
	"deletionGracePeriodSeconds": true, "generateName": true, "ownerReferences": true, "finalizers": true,
}

func (k *Kinds) parseObject(docName string, top map[string]json.RawMessage) (*Object, FieldErrors) {
	fe := &fieldErrs{object: docName}
	o := &Object{}
	for key, raw := range top {
		switch key {
		case "apiVersion":
			if json.Unmarshal(raw, &o.APIVersion) != nil {
				fe.add("apiVersion", "must be a string")
			}
		case "kind":
			if json.Unmarshal(raw, &o.Kind) != nil {
				fe.add("kind", "must be a string")
			}
		case "metadata", "spec":
		default:
			if !envelopeIgnored[key] {
				fe.add(key, "unknown field %q (want apiVersion, kind, metadata, spec)", key)
			}
		}
	}
	if raw, ok := top["metadata"]; ok {
		parseMeta(raw, &o.Meta, fe)
	} else {
		fe.add("metadata", "required")
	}
	if o.Meta.Namespace == "" {
		o.Meta.Namespace = DefaultNamespace
	}
	if o.Kind != "" && o.Meta.Name != "" {
		fe.object = o.Key()
		for i := range fe.errs {
			fe.errs[i].Object = fe.object
		}
	}
	if o.Kind == "" {
		fe.add("kind", "required")
		return nil, fe.errs
	}
	spec, ok := k.specFor(o.Kind, o.APIVersion)
	if ok && spec.Kind != o.Kind {
		o.Kind = spec.Kind // qualified by its group: Gateway API's Gateway
		fe.object = o.Key()
		for i := range fe.errs {
			fe.errs[i].Object = fe.object
		}
	}
	if !ok {
		hint := ""
		if s, ok := k.Lookup(o.Kind); ok {
			hint = fmt.Sprintf(" (did you mean %s?)", s.Kind)
		}
		// Istio's EnvoyFilter, WasmPlugin, ProxyConfig... are valid config
		// that meshlens does not serve: say so, not that the kind does not
		// exist, and how to apply the rest of a file that holds them.
		skip := ""
		if hint == "" {
			skip = "; `meshlens apply --skip-unsupported` applies the other objects and lists the skipped ones"
		}
		fe.add("kind", "unsupported kind %q%s: meshlens does not support %s; it serves %s%s", o.Kind, hint, o.Kind, strings.Join(k.Names(), ", "), skip)
		return nil, fe.errs
	}
	if o.APIVersion != "" && !spec.acceptsGroup(o.APIVersion) {
		// Another product's kind of the same name as one meshlens serves.
		fe.add("kind", "unsupported kind %q of %s: meshlens does not support it; it serves %s of %s; `meshlens apply --skip-unsupported` applies the other objects and lists the skipped ones",
			o.Kind, o.APIVersion, spec.Kind, strings.Join(spec.APIVersions, ", "))
		return nil, fe.errs
	}
	if !spec.acceptsVersion(o.APIVersion) {
		fe.add("apiVersion", "%s does not accept apiVersion %q; use one of %s", o.Kind, o.APIVersion, strings.Join(spec.APIVersions, ", "))
	}
	raw, ok := top["spec"]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		raw = []byte("{}")
	}
	v, err := spec.Decode(raw)
	if err != nil {
		var ferrs FieldErrors
		if errors.As(err, &ferrs) {
			for _, e := range ferrs {
				fe.errs = append(fe.errs, FieldError{Object: fe.object, Field: e.Field, Message: e.Message})
			}
		} else {
			fe.add("spec", "%v", err)
		}
	}
	o.Spec = v
	if len(fe.errs) > 0 {
		return nil, fe.errs
	}
	return o, nil
}

// skippedRef names an object of an unsupported kind as well as its
// metadata allows; it is not validated, only listed.
func skippedRef(kind string, top map[string]json.RawMessage) ObjectRef {
	var meta struct{ Name, Namespace string }
	_ = json.Unmarshal(top["metadata"], &meta)
	if meta.Namespace == "" {
		meta.Namespace = DefaultNamespace
	}
	return ObjectRef{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}
}

func parseMeta(raw json.RawMessage, m *Meta, fe *fieldErrs) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		fe.add("metadata", "must be an object")
		return
	}
	for key, v := range fields {
		var err error
		switch key {
		case "name":
			err = json.Unmarshal(v, &m.Name)
		case "namespace":
			err = json.Unmarshal(v, &m.Namespace)
		case "labels":
			err = json.Unmarshal(v, &m.Labels)
		case "annotations":
			err = json.Unmarshal(v, &m.Annotations)
		default:
			if !metadataIgnored[key] {
				fe.add("metadata."+key, "unknown field %q", key)
			}
			continue
		}
		if err != nil {
			fe.add("metadata."+key, "wrong type: %s", jsonTypeError(err))
		}
	}
	switch {
	case m.Name == "":
		fe.add("metadata.name", "required")
	case !dns1123Subdomain.MatchString(m.Name) || len(m.Name) > 253:
		fe.add("metadata.name", "%q is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", m.Name)
	}
	if m.Namespace != "" && (!dns1123Label.MatchString(m.Namespace) || len(m.Namespace) > 63) {
		fe.add("metadata.namespace", "%q is not a valid namespace: lower-case letters, digits and '-', at most 63 characters", m.Namespace)
	}
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func jsonTypeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("got %s, want %s", te.Value, te.Type)
	}
	return err.Error()
}

// documents yields the documents of YAML split on "---" separator lines, as
// kubectl splits them, one at a time.
func documents(data []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		var cur bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), MaxDocumentBytes+1)
		for sc.Scan() {
			line := sc.Bytes()
			if isSeparator(line) {
				if !yield(bytes.Clone(cur.Bytes())) {
					return
				}
				cur.Reset()
				// "--- value" starts the next document with value on the same line.
				if rest := bytes.TrimSpace(line[3:]); len(rest) > 0 && rest[0] != '#' {
					cur.Write(rest)
					cur.WriteByte('\n')
				}
				continue
			}
			cur.Write(line)
			cur.WriteByte('\n')
		}
		yield(cur.Bytes())
	}
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := line[3:]
	return len(bytes.TrimSpace(rest)) == 0 || rest[0] == ' ' || rest[0] == '\t'
}
