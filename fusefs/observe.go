package fusefs

import (
	"reflect"
	"strings"
	"sync"
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
	t := reflect.TypeOf(r)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	op := strings.ToLower(strings.TrimSuffix(t.Name(), "Request"))
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

// maxInFlight bounds the start table: a request that never got an answer
// logged (none is known) must not make it grow for ever.
const maxInFlight = 1 << 14

func newOpTimer(observe func(op string, d time.Duration, errno string)) *opTimer {
	return &opTimer{observe: observe, start: map[fuse.RequestID]started{}}
}

// debug is bazil's Config.Debug; it runs on every request and answer.
func (t *opTimer) debug(msg any) {
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Struct {
		return
	}
	if in := v.FieldByName("In"); in.IsValid() && in.CanInterface() {
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
	req, errno := v.FieldByName("Request"), v.FieldByName("Errno")
	if req.Kind() != reflect.Struct || errno.Kind() != reflect.String {
		return
	}
	idv := req.FieldByName("ID")
	if !idv.IsValid() || !idv.CanUint() {
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
	t.observe(s.op, time.Since(s.at), errno.String())
}
