//go:build race

package tracker

// raceEnabled: the race detector slows the thousand-peer tests past
// their read timeouts; their logic is covered race-checked by the small
// tests.
const raceEnabled = true
