package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DecodeProto decodes a spec's JSON into msg with protojson semantics, but
// first walks the JSON against msg's descriptor so that every error names
// its field path ("http[0].route[1].destinaton: unknown field"), and so that
// durations may be written the way Istio users write them ("500ms", "5m")
// as well as protojson's "0.5s". Errors are FieldErrors. Packages that own
// proto-typed meshlens kinds can use it as their KindSpec.Decode.
func DecodeProto(js []byte, msg proto.Message) error {
	var tree any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return FieldErrors{{Message: "spec is not valid JSON: " + err.Error()}}
	}
	fe := &fieldErrs{}
	tree = checkMessage(tree, msg.ProtoReflect().Descriptor(), "", fe)
	if len(fe.errs) > 0 {
		return FieldErrors(fe.errs)
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return FieldErrors{{Message: "re-encoding spec: " + err.Error()}}
	}
	if err := protojson.Unmarshal(b, msg); err != nil {
		// The walk above should have caught everything protojson rejects;
		// this keeps any remaining case an error rather than a panic.
		return FieldErrors{{Message: strings.TrimPrefix(err.Error(), "proto: ")}}
	}
	return nil
}

func describeJSON(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func checkMessage(v any, md protoreflect.MessageDescriptor, path string, fe *fieldErrs) any {
	if wkt, ok := checkWellKnown(v, md, path, fe); ok {
		return wkt
	}
	obj, ok := v.(map[string]any)
	if !ok {
		fe.add(path, "want an object, got %s", describeJSON(v))
		return v
	}
	fields := md.Fields()
	oneofSeen := map[protoreflect.FullName]string{}
	keys := make([]string, 0, len(obj))
	for key := range obj {
		keys = append(keys, key)
	}
	sort.Strings(keys) // stable error order
	for _, key := range keys {
		val := obj[key]
		p := joinPath(path, key)
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			fe.add(p, "unknown field %q%s", key, suggestField(key, fields))
			continue
		}
		if val == nil {
			continue // protojson treats null as unset
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, dup := oneofSeen[od.FullName()]; dup {
				fe.add(p, "only one of %s may be set; %s is set too", oneofNames(od), prev)
				continue
			}
			oneofSeen[od.FullName()] = key
		}
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				fe.add(p, "want an object (a map), got %s", describeJSON(val))
				continue
			}
			for mk, mv := range m {
				kp := keyPath(p, mk)
				checkMapKey(mk, fd.MapKey(), kp, fe)
				if mv == nil {
					fe.add(kp, "map value must not be null")
					continue
				}
				m[mk] = checkValue(mv, fd.MapValue(), kp, fe)
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				fe.add(p, "want a list, got %s", describeJSON(val))
				continue
			}
			for i, e := range l {
				if e == nil {
					fe.add(indexPath(p, i), "list element must not be null")
					continue
				}
				l[i] = checkValue(e, fd, indexPath(p, i), fe)
			}
		default:
			obj[key] = checkValue(val, fd, p, fe)
		}
	}
	return obj
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	var names []string
	for i := 0; i < od.Fields().Len(); i++ {
		names = append(names, od.Fields().Get(i).JSONName())
	}
	return strings.Join(names, ", ")
}

// suggestField names a field that differs only in case or underscores, the
// usual mistake when copying from other tools.
func suggestField(key string, fields protoreflect.FieldDescriptors) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for i := 0; i < fields.Len(); i++ {
		if norm(fields.Get(i).JSONName()) == norm(key) {
			return fmt.Sprintf(" (did you mean %q?)", fields.Get(i).JSONName())
		}
	}
	return ""
}

func checkMapKey(k string, fd protoreflect.FieldDescriptor, path string, fe *fieldErrs) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			fe.add(path, "map key must be true or false")
		}
	case protoreflect.StringKind:
	default:
		if err := checkInt(json.Number(k), fd.Kind()); err != "" {
			fe.add(path, "map key %s", err)
		}
	}
}

func checkValue(v any, fd protoreflect.FieldDescriptor, path string, fe *fieldErrs) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(v, fd.Message(), path, fe)
	case protoreflect.EnumKind:
		checkEnum(v, fd.Enum(), path, fe)
	default:
		checkScalar(v, fd.Kind(), path, fe)
	}
	return v
}

func checkEnum(v any, ed protoreflect.EnumDescriptor, path string, fe *fieldErrs) {
	values := ed.Values()
	switch x := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(x)) != nil {
			return
		}
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 32); err == nil && values.ByNumber(protoreflect.EnumNumber(n)) != nil {
			return
		}
	}
	names := make([]string, values.Len())
	for i := range names {
		names[i] = string(values.Get(i).Name())
	}
	fe.add(path, "invalid value %s; want one of %s", shortJSON(v), strings.Join(names, ", "))
}

func shortJSON(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 64 {
		return string(b[:61]) + "..."
	}
	return string(b)
}

func checkScalar(v any, kind protoreflect.Kind, path string, fe *fieldErrs) {
	switch kind {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			fe.add(path, "want true or false, got %s", describeJSON(v))
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			fe.add(path, "want a string, got %s", describeJSON(v))
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch x := v.(type) {
		case json.Number:
			if _, err := strconv.ParseFloat(string(x), 64); err != nil {
				fe.add(path, "%s is not a number", x)
			}
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil && x != "NaN" && x != "Infinity" && x != "-Infinity" {
				fe.add(path, "want a number, got %q", x)
			}
		default:
			fe.add(path, "want a number, got %s", describeJSON(v))
		}
	default: // integers
		var n json.Number
		switch x := v.(type) {
		case json.Number:
			n = x
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil {
				fe.add(path, "want an integer, got a string (%q)", x)
				return
			}
			n = json.Number(x)
		default:
			fe.add(path, "want an integer, got %s", describeJSON(v))
			return
		}
		if msg := checkInt(n, kind); msg != "" {
			fe.add(path, "%s", msg)
		}
	}
}

// checkInt reports why n is not a valid integer of kind, or "".
func checkInt(n json.Number, kind protoreflect.Kind) string {
	s := string(n)
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if _, err := strconv.ParseInt(s, 10, 32); err != nil {
			return fmt.Sprintf("%q is not an integer in [%d, %d]", s, math.MinInt32, math.MaxInt32)
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if _, err := strconv.ParseUint(s, 10, 32); err != nil {
			return fmt.Sprintf("%q is not an integer in [0, %d]", s, uint32(math.MaxUint32))
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Sprintf("%q is not a 64-bit integer", s)
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			return fmt.Sprintf("%q is not an unsigned 64-bit integer", s)
		}
	}
	return ""
}

// checkWellKnown handles google.protobuf types whose JSON form is not an
// object of their fields. ok is false for any other message.
func checkWellKnown(v any, md protoreflect.MessageDescriptor, path string, fe *fieldErrs) (any, bool) {
	if md.ParentFile().Package() != "google.protobuf" {
		return nil, false
	}
	switch md.Name() {
	case "Duration":
		s, ok := v.(string)
		if !ok {
			fe.add(path, "want a duration string like \"5s\" or \"250ms\", got %s", describeJSON(v))
			return v, true
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			fe.add(path, "%q is not a duration; write it like \"5s\", \"250ms\" or \"1m30s\"", s)
			return v, true
		}
		return protoDuration(d), true
	case "Timestamp", "FieldMask":
		if _, ok := v.(string); !ok {
			fe.add(path, "want a string, got %s", describeJSON(v))
		}
		return v, true
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue":
		checkScalar(v, md.Fields().ByName("value").Kind(), path, fe)
		return v, true
	case "Struct", "Empty":
		if _, ok := v.(map[string]any); !ok {
			fe.add(path, "want an object, got %s", describeJSON(v))
		}
		return v, true
	case "ListValue":
		if _, ok := v.([]any); !ok {
			fe.add(path, "want a list, got %s", describeJSON(v))
		}
		return v, true
	case "Value", "Any":
		return v, true
	}
	return nil, false
}

// protoDuration formats d the way protojson reads durations.
func protoDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign = "-"
		d = -d // time.ParseDuration cannot return MinInt64 magnitude issues for valid input
	}
	return fmt.Sprintf("%s%d.%09ds", sign, d/time.Second, d%time.Second)
}
