package export

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// errTooSlow is the cause of a transfer cut for falling below the
// minimum rate (Options.MinTransferRate).
var errTooSlow = errors.New("transfer below the minimum rate")

// minRate keeps a transfer above the minimum rate with deadlines, no
// goroutine: each byte moved buys 1/perSec s of time, and the time bought
// runs at most window ahead of now; a transfer starts with one window.
// due is when the time bought runs out: a read must see bytes by then,
// and a write of k bytes must end by due plus what k bytes buy. A client
// that trickles a byte per deadline is cut once its window is spent,
// which per-operation deadlines that reset on progress never do.
//
// It belongs to one connection's goroutine.
type minRate struct {
	perSec int64 // bytes per second; <= 0: no minimum
	window time.Duration

	on  bool // a transfer is running
	due time.Time
}

// start begins a transfer at now.
func (r *minRate) start(now time.Time) {
	r.on = r.perSec > 0
	r.due = now.Add(r.window)
}

// stop ends the transfer.
func (r *minRate) stop() { r.on = false }

// buys is the time n bytes buy.
func (r *minRate) buys(n int64) time.Duration {
	return time.Duration(n * int64(time.Second) / r.perSec)
}

// deadline returns the deadline for moving k more bytes (0 for a read,
// which must see any), no later than limit.
func (r *minRate) deadline(limit time.Time, k int64) time.Time {
	if !r.on {
		return limit
	}
	if d := r.due.Add(r.buys(k)); d.Before(limit) {
		return d
	}
	return limit
}

// moved records n bytes moved at now.
func (r *minRate) moved(n int64, now time.Time) {
	if !r.on || n <= 0 {
		return
	}
	r.due = r.due.Add(r.buys(n))
	if most := now.Add(r.window); r.due.After(most) {
		r.due = most
	}
}

// cut explains err, a read's or write's error, if the rate's deadline
// caused it: the error then says so and wraps both errTooSlow and err
// (a timeout still).
func (r *minRate) cut(err error) error {
	if err == nil || !r.on || !isTimeout(err) || time.Now().Before(r.due) {
		return err
	}
	return fmt.Errorf("%w (%d bytes/s, %v behind at most): %w", errTooSlow, r.perSec, r.window, err)
}

// deadlineReader renews the read deadline before every read, so a peer
// that keeps sending survives however long the transfer, and one that
// stalls is cut after timeout, or sooner if a transfer runs and falls
// below its minimum rate.
type deadlineReader struct {
	nc      net.Conn
	timeout time.Duration // 0 while the caller manages the deadline itself
	rate    *minRate
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if r.timeout > 0 {
		now := time.Now()
		if err := r.nc.SetReadDeadline(r.rate.deadline(now.Add(r.timeout), 0)); err != nil {
			return 0, err
		}
	}
	n, err := r.nc.Read(p)
	r.rate.moved(int64(n), time.Now())
	return n, r.rate.cut(err)
}

// deadlineWriter renews the write deadline before every write, as
// deadlineReader does for reads.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	rate    *minRate
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.nc.SetWriteDeadline(w.rate.deadline(time.Now().Add(w.timeout), int64(len(p)))); err != nil {
		return 0, err
	}
	n, err := w.nc.Write(p)
	w.rate.moved(int64(n), time.Now())
	return n, w.rate.cut(err)
}
