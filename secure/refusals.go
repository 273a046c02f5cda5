package secure

import (
	"net"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxLoggedSources bounds the distinct sources a refusal summary counts.
const maxLoggedSources = 1024

// refusalLog logs refused connections at a bounded rate. After a quiet
// spell, the first refusal is logged in full ("refused connection", with
// its address, reason and error) and a window of one interval opens; the
// refusals in it are only counted, and logged as one summary line
// ("refused connections", with counts by reason) when it ends. A window
// with refusals opens the next one; a window without closes the spell. So
// a flood costs at most two lines per interval, whatever its rate.
//
// Its timer is its only goroutine, stopped by close.
type refusalLog struct {
	log   zerolog.Logger
	every time.Duration
	wg    sync.WaitGroup // the timer's callback, while armed or running

	mu      sync.Mutex // protects the fields below
	closed  bool
	open    bool        // a window is open: refusals are counted, not logged
	timer   *time.Timer // ends the open window
	counts  map[string]int
	sources map[string]struct{} // distinct sources in the window, at most maxLoggedSources
	last    string              // the window's last source
}

func (l *refusalLog) init(log zerolog.Logger, every time.Duration) {
	l.log, l.every = log, every
	l.counts = make(map[string]int)
	l.sources = make(map[string]struct{})
}

// refused records one refusal of a connection from addr.
func (l *refusalLog) refused(addr net.Addr, reason string, err error) {
	remote := "?"
	if addr != nil {
		remote = addr.String()
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if l.open {
		l.counts[reason]++
		if len(l.sources) < maxLoggedSources {
			l.sources[sourceKey(addr)] = struct{}{}
		}
		l.last = remote
		l.mu.Unlock()
		return
	}
	l.open = true
	l.armLocked()
	l.mu.Unlock()
	// Logged outside the lock: a slow log must not hold up the others.
	l.log.Warn().Str("remote", remote).Str("reason", reason).AnErr("error", err).
		Dur("summary_every", l.every).Msg("refused connection")
}

// armLocked starts the timer that ends the window.
func (l *refusalLog) armLocked() {
	l.wg.Add(1)
	l.timer = time.AfterFunc(l.every, func() {
		defer l.wg.Done()
		l.tick()
	})
}

// tick ends a window: it logs what the window counted and opens the next,
// or ends the spell if it counted nothing.
func (l *refusalLog) tick() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	s := l.takeLocked()
	if s.total == 0 {
		l.open = false
		l.mu.Unlock()
		return
	}
	l.armLocked()
	l.mu.Unlock()
	s.write(l.log, l.every)
}

// close logs what the open window counted and stops the timer.
func (l *refusalLog) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	if l.timer != nil && l.timer.Stop() {
		l.wg.Done() // its callback will never run
	}
	s := l.takeLocked()
	l.mu.Unlock()
	l.wg.Wait()
	if s.total > 0 {
		s.write(l.log, l.every)
	}
}

// refusalSummary is what one window counted.
type refusalSummary struct {
	total   int
	counts  map[string]int
	sources int
	last    string
}

func (l *refusalLog) takeLocked() refusalSummary {
	s := refusalSummary{counts: l.counts, sources: len(l.sources), last: l.last}
	for _, n := range l.counts {
		s.total += n
	}
	if s.total > 0 {
		l.counts = make(map[string]int)
		clear(l.sources)
	}
	return s
}

func (s refusalSummary) write(log zerolog.Logger, every time.Duration) {
	reasons := make([]string, 0, len(s.counts))
	for r := range s.counts {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	e := log.Warn().Int("refused", s.total).Dur("interval", every)
	for _, r := range reasons {
		e = e.Int(r, s.counts[r])
	}
	e.Int("sources", s.sources).Str("last_remote", s.last).Msg("refused connections")
}
