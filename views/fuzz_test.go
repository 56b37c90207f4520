package views_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/meshlens/meshlens/views"
)

// FuzzDecodeView: whatever arrives as a view, decoding and validating it
// never panics, every refusal names a field, and a view that is accepted
// reads back the same after encoding.
func FuzzDecodeView(f *testing.F) {
	example, err := os.ReadFile("../examples/views/checkout-team.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(example), checkout, `{}`, `{"name": "a", "pinned": {"x": {"x": 1e400}}}`, `{"name": "a", "groupBy": "label:a/b/c"}`, `[1]`, `{"name": "a"} {}`, "{\"name\": \"\xff\"}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := views.Decode(bytes.NewReader(body))
		if err == nil {
			err = v.Validate()
		}
		var fe *views.FieldError
		if err != nil {
			if !errors.As(err, &fe) || fe.Field == "" || fe.Message == "" {
				t.Fatalf("refusal %v does not name a field", err)
			}
			return
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("an accepted view does not encode: %v", err)
		}
		again, err := views.Decode(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("an accepted view does not decode again: %v: %s", err, enc)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("an accepted view is refused after a round trip: %v: %s", err, enc)
		}
		enc2, _ := json.Marshal(again)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("a round trip changed the view:\n%s\n%s", enc, enc2)
		}
	})
}
