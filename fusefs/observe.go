package fusefs

import (
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"bazil.org/fuse"
)

// opTimer measures every FUSE request from its arrival to its answer and
// reports it to Options.Observe. bazil has no hook around a request, but
// it passes both ends to its debug function: the request (wrapped, with
// the fuse.Request in field In) and the response (with fields Request.ID
// and Errno). The wrappers are unexported, so their exported
// fields are read by reflection; a message of another shape is ignored,
// so a change in bazil costs the measurements, never a request.
type opTimer struct {
	observe func(op string, d time.Duration, errno string)

	mu    sync.Mutex // protects the field below
	start map[fuse.RequestID]started
}

// started is a request in flight.
type started struct {
	at time.Time
	op string
}

// opName names a request's operation as the kernel does: "lookup",
// "getattr", "read", and for directories "opendir", "readdir",
// "releasedir", "fsyncdir".
func opName(r fuse.Request) string {
	op := typeOpName(reflect.TypeOf(r))
	dir := false
	switch r := r.(type) {
	case *fuse.OpenRequest:
		dir = r.Dir
	case *fuse.ReadRequest:
		dir = r.Dir
	case *fuse.ReleaseRequest:
		dir = r.Dir
	case *fuse.FsyncRequest:
		dir = r.Dir
	}
	if dir {
		op += "dir"
	}
	return op
}

// opNames maps reflect.Type to its operation name; replaced, never
// changed, like shapes.
var (
	opNames   atomic.Pointer[map[reflect.Type]string]
	opNamesMu sync.Mutex // serialises replacing opNames
)

// typeOpName is the operation name of a request type: "lookup" for
// *fuse.LookupRequest.
func typeOpName(t reflect.Type) string {
	if m := opNames.Load(); m != nil {
		if op, ok := (*m)[t]; ok {
			return op
		}
	}
	e := t
	if e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	op := strings.ToLower(strings.TrimSuffix(e.Name(), "Request"))
	opNamesMu.Lock()
	next := map[reflect.Type]string{t: op}
	if m := opNames.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	opNames.Store(&next)
	opNamesMu.Unlock()
	return op
}

// maxInFlight bounds the start table: a request that never got an answer
// logged (none is known) must not make it grow for ever.
const maxInFlight = 1 << 14

func newOpTimer(observe func(op string, d time.Duration, errno string)) *opTimer {
	return &opTimer{observe: observe, start: map[fuse.RequestID]started{}}
}

// msgShape is where, in one type of bazil's debug messages, the fields
// debug reads are: -1 where the type has none. FieldByName is slow (it
// walks the type by name on every call), and debug runs twice per request.
type msgShape struct {
	in, req, errno int // indexes of fields In, Request and Errno
	id             int // index of field ID in Request's type
}

// shapes maps reflect.Type to msgShape. It is replaced, never changed:
// the handful of message types is learnt in the first requests, and every
// later lookup is a plain map read.
var (
	shapes   atomic.Pointer[map[reflect.Type]msgShape]
	shapesMu sync.Mutex // serialises replacing shapes
)

func shapeOf(t reflect.Type) msgShape {
	if m := shapes.Load(); m != nil {
		if sh, ok := (*m)[t]; ok {
			return sh
		}
	}
	sh := msgShape{in: -1, req: -1, errno: -1, id: -1}
	if f, ok := t.FieldByName("In"); ok && len(f.Index) == 1 && f.IsExported() {
		sh.in = f.Index[0]
	}
	if f, ok := t.FieldByName("Request"); ok && len(f.Index) == 1 && f.Type.Kind() == reflect.Struct {
		if id, ok := f.Type.FieldByName("ID"); ok && len(id.Index) == 1 && id.IsExported() {
			sh.req, sh.id = f.Index[0], id.Index[0]
		}
	}
	if f, ok := t.FieldByName("Errno"); ok && len(f.Index) == 1 && f.Type.Kind() == reflect.String {
		sh.errno = f.Index[0]
	}
	shapesMu.Lock()
	next := map[reflect.Type]msgShape{t: sh}
	if m := shapes.Load(); m != nil {
		for k, v := range *m {
			next[k] = v
		}
	}
	shapes.Store(&next)
	shapesMu.Unlock()
	return sh
}

// debug is bazil's Config.Debug; it runs on every request and answer.
func (t *opTimer) debug(msg any) {
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Struct {
		return
	}
	sh := shapeOf(v.Type())
	if sh.in >= 0 {
		in := v.Field(sh.in)
		if !in.CanInterface() {
			return
		}
		if r, ok := in.Interface().(fuse.Request); ok {
			now := time.Now()
			t.mu.Lock()
			if len(t.start) >= maxInFlight {
				for id, s := range t.start {
					if now.Sub(s.at) > time.Minute {
						delete(t.start, id)
					}
				}
			}
			t.start[r.Hdr().ID] = started{at: now, op: opName(r)}
			t.mu.Unlock()
		}
		return
	}
	if sh.req < 0 || sh.errno < 0 {
		return
	}
	idv := v.Field(sh.req).Field(sh.id)
	if !idv.CanUint() {
		return
	}
	id := fuse.RequestID(idv.Uint())
	t.mu.Lock()
	s, ok := t.start[id]
	delete(t.start, id)
	t.mu.Unlock()
	if !ok {
		return
	}
	t.observe(s.op, time.Since(s.at), v.Field(sh.errno).String())
}
