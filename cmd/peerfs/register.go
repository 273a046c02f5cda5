package main

// What peer and mount do about the tracker when they start: check its
// address, and give up at once if the tracker refuses this peer for good.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// registerWait bounds how long peer and mount wait at start for the
// tracker's answer to their first REGISTER (the tracker client's own
// timeouts end an attempt sooner: 5s to connect, 5s for TLS, 5s for the
// answer).
const registerWait = 20 * time.Second

// resolveTimeout bounds the look-up of the tracker's host name at start.
const resolveTimeout = 5 * time.Second

// trackerAddrs splits the tracker setting into its addresses: one, or
// several replicas separated by commas.
func trackerAddrs(setting string) []string { return splitList(setting) }

// splitList splits a comma-separated setting, ignoring blanks around
// its items and empty items.
func splitList(setting string) []string {
	var items []string
	for a := range strings.SplitSeq(setting, ",") {
		if a = strings.TrimSpace(a); a != "" {
			items = append(items, a)
		}
	}
	return items
}

// firstTracker is the first address of the tracker setting, or "": the
// command shell registers with one tracker.
func firstTracker(setting string) string {
	if addrs := trackerAddrs(setting); len(addrs) > 0 {
		return addrs[0]
	}
	return ""
}

// checkTrackerAddrs checks the tracker setting before anything starts:
// one address or several, separated by commas, each as checkTrackerAddr
// wants it.
func checkTrackerAddrs(ctx context.Context, setting string, set *settings) error {
	addrs := trackerAddrs(setting)
	if len(addrs) == 0 {
		return set.bad("TRACKER", setting, "want HOST:PORT, or several separated by commas")
	}
	for _, a := range addrs {
		if err := checkTrackerAddr(ctx, a, set); err != nil {
			return err
		}
	}
	return nil
}

// checkTrackerAddr checks a tracker address before anything starts: it
// must be HOST:PORT with a port number, and a host name must exist. A
// name server that does not answer is not held against the address (the
// tracker client retries); a name that does not exist is a usage error.
func checkTrackerAddr(ctx context.Context, addr string, set *settings) error {
	const want = "want HOST:PORT, e.g. tracker-host:7070"
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return set.bad("TRACKER", addr, want)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return set.bad("TRACKER", addr, fmt.Sprintf("the port must be a number from 1 to 65535 (%s)", want))
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(rctx, host)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound || err == nil && len(addrs) == 0 {
		return set.bad("TRACKER", addr, fmt.Sprintf("no host is called %q", host))
	}
	return nil
}

// awaitRegistration waits (up to wait) for the tracker client's first
// attempt to register. A refusal that stands until someone acts (another
// cluster's secret, a taken name) is returned, with what to do about it;
// a tracker that cannot be reached yet is only logged: the client keeps
// trying, as it does for the rest of the daemon's life.
func awaitRegistration(ctx context.Context, tc *tracker.Client, addr string, wait time.Duration, set *settings, sec SecurityConfig, log zerolog.Logger) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := tc.WaitFirstAttempt(wctx)
	switch {
	case err == nil:
		return nil
	case tracker.IsFinalRefusal(err):
		var fe *peerproto.FailError
		errors.As(err, &fe) // the tracker's answer, without the client's context
		return fmt.Errorf("the tracker at %s refuses this peer: %w%s", addr, fe, refusalHint(fe, set, sec))
	case ctx.Err() != nil:
		return nil // stopping anyway
	case wctx.Err() != nil:
		log.Warn().Str("tracker", addr).Dur("waited", wait).Msg("the tracker has not answered yet; going on, registering in the background")
	default:
		log.Warn().Err(err).Str("tracker", addr).Msg("the tracker cannot be reached yet; going on, registering in the background")
	}
	return nil
}

// refusalHint says what to do about a final refusal, naming the settings
// as the user gave them.
func refusalHint(fe *peerproto.FailError, set *settings, sec SecurityConfig) string {
	switch fe.Code {
	case peerproto.CodeDenied:
		switch {
		case sec.Insecure:
			return fmt.Sprintf(" (the tracker wants the cluster secret: set %s or %s instead of %s)", set.of("SECRET"), set.of("SECRET_FILE"), set.of("INSECURE"))
		case sec.SecretFile != "":
			return fmt.Sprintf(" (%s does not hold the tracker's cluster secret)", set.of("SECRET_FILE").with(sec.SecretFile))
		default:
			return fmt.Sprintf(" (%s is not the tracker's cluster secret)", set.of("SECRET"))
		}
	case peerproto.CodeExists:
		return fmt.Sprintf(" (another peer uses this name: choose another with %s)", set.of("NAME"))
	case peerproto.CodeInvalid:
		return fmt.Sprintf(" (check %s)", set.of("NAME"))
	}
	return ""
}
