package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// The queue's entry format. Every row passes through it twice (written by
// the pipeline, read back by the writer), so it is built for speed, in the
// manner of Prometheus' WAL records: fields in a fixed order, integers as
// varints, and the strings that repeat from row to row (namespaces, services,
// names, attribute keys and values) written once per entry and referred to by
// number afterwards. Trace and span ids, unique per row, are written as they
// are. A reader takes every string as a slice of one copy of the entry, so
// decoding allocates little more than the rows themselves.
//
// An entry starts with formatTag and the format's version. A gob stream, the
// format of entries written before, starts with the non-zero length of its
// first message, so entries left on disk by an older meshlens are still told
// apart and read (decodeLegacy).
const (
	formatTag     = 0x00
	formatVersion = 1
)

// noTime stands for the zero time.Time, which has no UnixNano.
const noTime = math.MinInt64

// encodeBatch appends b's encoding to dst.
func encodeBatch(dst []byte, b *Batch) []byte {
	e := encoder{buf: append(dst, formatTag, formatVersion), dict: map[string]uint64{}}
	e.uvarint(uint64(len(b.Records)))
	e.uvarint(uint64(len(b.Spans)))
	e.uvarint(uint64(len(b.Points)))
	e.uvarint(uint64(len(b.Logs)))
	for i := range b.Records {
		r := &b.Records[i]
		e.time(r.Time)
		e.peer(r.Source)
		e.peer(r.Destination)
		e.str(r.Protocol)
		e.str(r.Method)
		e.str(r.Path)
		e.str(r.Authority)
		e.uvarint(uint64(r.Code))
		e.varint(int64(r.GRPCStatus))
		e.str(r.Flags)
		e.varint(int64(r.Duration))
		e.uvarint(r.BytesIn)
		e.uvarint(r.BytesOut)
		e.bool(r.MTLS)
		e.raw(r.TraceID)
		e.raw(r.SpanID)
		e.str(string(r.Origin))
	}
	for i := range b.Spans {
		s := &b.Spans[i]
		e.time(s.Start)
		e.raw(s.TraceID)
		e.raw(s.SpanID)
		e.raw(s.ParentSpanID)
		e.str(s.Name)
		e.str(s.Kind)
		e.peer(s.Peer)
		e.varint(int64(s.Duration))
		e.str(s.StatusCode)
		e.str(s.StatusMessage)
		e.strs(s.AttrKeys)
		e.strs(s.AttrValues)
	}
	for i := range b.Points {
		p := &b.Points[i]
		e.time(p.Time)
		e.str(p.Name)
		e.str(p.Type)
		e.str(p.Unit)
		e.peer(p.Peer)
		e.float(p.Value)
		e.uvarint(p.Count)
		e.float(p.Sum)
		e.uvarint(uint64(len(p.Bounds)))
		for _, f := range p.Bounds {
			e.float(f)
		}
		e.uvarint(uint64(len(p.BucketCounts)))
		for _, n := range p.BucketCounts {
			e.uvarint(n)
		}
		e.strs(p.AttrKeys)
		e.strs(p.AttrValues)
	}
	for i := range b.Logs {
		l := &b.Logs[i]
		e.time(l.Time)
		e.str(l.Severity)
		e.raw(l.Body)
		e.peer(l.Peer)
		e.raw(l.TraceID)
		e.raw(l.SpanID)
		e.strs(l.AttrKeys)
		e.strs(l.AttrValues)
	}
	return e.buf
}

type encoder struct {
	buf  []byte
	dict map[string]uint64 // strings written so far, by number from 1
}

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) float(f float64) {
	e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(f))
}

func (e *encoder) bool(v bool) {
	if v {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.varint(noTime)
		return
	}
	e.varint(t.UnixNano())
}

// raw writes a string that is not expected to repeat: its length and bytes.
func (e *encoder) raw(s string) {
	e.uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// str writes a string that may repeat: the number of its first occurrence,
// or 0 and the string itself the first time.
func (e *encoder) str(s string) {
	if n, ok := e.dict[s]; ok {
		e.uvarint(n)
		return
	}
	e.dict[s] = uint64(len(e.dict) + 1)
	e.uvarint(0)
	e.raw(s)
}

func (e *encoder) strs(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) peer(p mesh.Peer) {
	e.str(p.Namespace)
	e.str(p.Service)
	e.str(p.Workload)
	e.str(p.Version)
}

// errCorrupt is returned for an entry that does not decode.
var errCorrupt = errors.New("corrupt queue entry")

// decodeBatch decodes an entry written by encodeBatch. It takes data over:
// the strings of the result are slices of it, so the caller must not change
// it afterwards (the queue's log hands out a fresh copy per read).
func decodeBatch(data []byte) (*Batch, error) {
	if len(data) < 2 || data[0] != formatTag {
		return nil, fmt.Errorf("%w: no format tag", errCorrupt)
	}
	if data[1] != formatVersion {
		return nil, fmt.Errorf("%w: format version %d, this meshlens reads %d", errCorrupt, data[1], formatVersion)
	}
	rest := data[2:]
	d := decoder{b: rest, s: unsafe.String(unsafe.SliceData(rest), len(rest))}
	nRecs, nSpans, nPoints, nLogs := d.count(), d.count(), d.count(), d.count()
	b := &Batch{}
	if nRecs > 0 {
		b.Records = make([]mesh.Record, nRecs)
	}
	if nSpans > 0 {
		b.Spans = make([]store.Span, nSpans)
	}
	if nPoints > 0 {
		b.Points = make([]store.MetricPoint, nPoints)
	}
	if nLogs > 0 {
		b.Logs = make([]store.LogRow, nLogs)
	}
	for i := range b.Records {
		r := &b.Records[i]
		r.Time = d.time()
		r.Source = d.peer()
		r.Destination = d.peer()
		r.Protocol = d.str()
		r.Method = d.str()
		r.Path = d.str()
		r.Authority = d.str()
		r.Code = uint16(d.uvarint())
		r.GRPCStatus = int16(d.varint())
		r.Flags = d.str()
		r.Duration = time.Duration(d.varint())
		r.BytesIn = d.uvarint()
		r.BytesOut = d.uvarint()
		r.MTLS = d.bool()
		r.TraceID = d.raw()
		r.SpanID = d.raw()
		r.Origin = mesh.Origin(d.str())
	}
	for i := range b.Spans {
		s := &b.Spans[i]
		s.Start = d.time()
		s.TraceID = d.raw()
		s.SpanID = d.raw()
		s.ParentSpanID = d.raw()
		s.Name = d.str()
		s.Kind = d.str()
		s.Peer = d.peer()
		s.Duration = time.Duration(d.varint())
		s.StatusCode = d.str()
		s.StatusMessage = d.str()
		s.AttrKeys = d.strs()
		s.AttrValues = d.strs()
	}
	for i := range b.Points {
		p := &b.Points[i]
		p.Time = d.time()
		p.Name = d.str()
		p.Type = d.str()
		p.Unit = d.str()
		p.Peer = d.peer()
		p.Value = d.float()
		p.Count = d.uvarint()
		p.Sum = d.float()
		if n := d.count(); n > 0 {
			p.Bounds = make([]float64, n)
			for j := range p.Bounds {
				p.Bounds[j] = d.float()
			}
		}
		if n := d.count(); n > 0 {
			p.BucketCounts = make([]uint64, n)
			for j := range p.BucketCounts {
				p.BucketCounts[j] = d.uvarint()
			}
		}
		p.AttrKeys = d.strs()
		p.AttrValues = d.strs()
	}
	for i := range b.Logs {
		l := &b.Logs[i]
		l.Time = d.time()
		l.Severity = d.str()
		l.Body = d.raw()
		l.Peer = d.peer()
		l.TraceID = d.raw()
		l.SpanID = d.raw()
		l.AttrKeys = d.strs()
		l.AttrValues = d.strs()
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last row", errCorrupt, len(d.b))
	}
	return b, nil
}

// decoder reads what encoder wrote. b and s are the same bytes left to
// read, s as a string that strings are sliced from. The first error
// sticks: later reads return zero values, and decodeBatch reports it once
// at the end.
type decoder struct {
	b    []byte
	s    string
	dict []string
	err  error
}

// skip moves past n bytes read.
func (d *decoder) skip(n int) {
	d.b, d.s = d.b[n:], d.s[n:]
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s with %d bytes left", errCorrupt, what, len(d.b))
	}
	d.skip(len(d.b))
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.skip(n)
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// count reads a number of items, each at least one byte long: more than the
// bytes left means the entry is corrupt, not that much should be allocated.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) float() float64 {
	if len(d.b) < 8 {
		d.fail("float")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.skip(8)
	return math.Float64frombits(v)
}

func (d *decoder) bool() bool {
	if len(d.b) < 1 || d.b[0] > 1 {
		d.fail("bool")
		return false
	}
	v := d.b[0] == 1
	d.skip(1)
	return v
}

func (d *decoder) time() time.Time {
	ns := d.varint()
	if ns == noTime {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func (d *decoder) raw() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string length")
		return ""
	}
	v := d.s[:n]
	d.skip(int(n))
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n == 0 {
		if d.err != nil {
			return ""
		}
		v := d.raw()
		d.dict = append(d.dict, v)
		return v
	}
	if n > uint64(len(d.dict)) {
		d.fail("string reference")
		return ""
	}
	return d.dict[n-1]
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) peer() mesh.Peer {
	return mesh.Peer{Namespace: d.str(), Service: d.str(), Workload: d.str(), Version: d.str()}
}
