package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DecodeJSON decodes a spec into a Go struct strictly: unknown fields and
// wrong types are FieldErrors naming the field, trailing data is an error.
// Packages with non-proto kinds (Rollout, AlertRule) can use it in their
// KindSpec.Decode.
func DecodeJSON(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the spec")
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldErrors{{Field: te.Field, Message: fmt.Sprintf("want %s, got %s", te.Type, te.Value)}}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return FieldErrors{{Field: strings.Trim(name, `"`), Message: "unknown field " + name}}
	}
	return FieldErrors{{Message: err.Error()}}
}
