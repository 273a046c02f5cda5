package e2e

// Running an assertion without failing the test: how the behaviour suite
// tries what is pending.

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// probe runs an assertion that is expected to fail and returns its first
// failure ("" if it passed). A Fatal or Skip inside ends the assertion,
// not the test.
func probe(t *testing.T, run func(testing.TB)) string {
	p := &prober{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(p)
	}()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.skipped != "" && p.failure == "" {
		return "skipped: " + p.skipped
	}
	return p.failure
}

// prober is a testing.TB that records failures instead of failing the
// test. Fatal, FailNow and Skip end the assertion's goroutine, as they
// end a test's.
type prober struct {
	testing.TB
	mu      sync.Mutex // protects the fields below
	failure string     // the first failure
	skipped string
}

func (p *prober) fail(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failure == "" {
		p.failure = msg
		if p.failure == "" {
			p.failure = "failed"
		}
	}
}

func (p *prober) Error(args ...any)                 { p.fail(fmt.Sprint(args...)) }
func (p *prober) Errorf(format string, args ...any) { p.fail(fmt.Sprintf(format, args...)) }
func (p *prober) Fail()                             { p.fail("failed") }
func (p *prober) FailNow()                          { p.fail("failed"); runtime.Goexit() }
func (p *prober) Fatal(args ...any)                 { p.fail(fmt.Sprint(args...)); runtime.Goexit() }
func (p *prober) Fatalf(format string, args ...any) {
	p.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (p *prober) Skip(args ...any)                 { p.skip(fmt.Sprint(args...)) }
func (p *prober) Skipf(format string, args ...any) { p.skip(fmt.Sprintf(format, args...)) }
func (p *prober) SkipNow()                         { p.skip("skipped") }

func (p *prober) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failure != ""
}

func (p *prober) skip(msg string) {
	p.mu.Lock()
	p.skipped = msg
	p.mu.Unlock()
	runtime.Goexit()
}
