package remote

// The status report: what `peerfs status` prints and .peerfs/status shows.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the daemon's status: what `peerfs status` prints and
// .peerfs/status shows.
type Report struct {
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	Mountpoint string        `json:"mountpoint,omitempty"`
	PID        int           `json:"pid,omitempty"`
	Time       time.Time     `json:"time"`
	Tracker    TrackerReport `json:"tracker"`
	Sync       SyncReport    `json:"sync"`
	Peers      []PeerReport  `json:"peers"`
	Pending    PendingReport `json:"pending"`
	// Unsent lists the copies set aside: they will not be stored unless
	// retried (see Store.Unsent).
	Unsent []Unsent    `json:"unsent"`
	Cache  CacheReport `json:"cache"`
}

// TrackerReport is the tracker part of a Report.
type TrackerReport struct {
	Addr       string `json:"addr"`
	Registered bool   `json:"registered"`
	Error      string `json:"error,omitempty"` // why not registered (the tracker's refusal, or the connection's error)
}

// SyncReport is this client's view of the SYNC round (tracker.SyncState).
type SyncReport struct {
	InRound   bool   `json:"in_round"`
	Holding   bool   `json:"holding"`
	LastRound uint64 `json:"last_round"`
	Waiting   int    `json:"waiting"`
}

// PeerReport is one peer's health, as the pinger and the last requests
// found it.
type PeerReport struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is "up" (the last request or PING was answered), "down" (it
	// failed to reach the peer) or "unknown" (nothing tried yet).
	// A peer the tracker no longer lists is down too, unless it
	// answered since.
	State    string    `json:"state"`
	RTT      float64   `json:"rtt_ms"` // the last PING's round trip, in ms; 0 if none
	LastSeen time.Time `json:"last_seen,omitzero"`
	Error    string    `json:"error,omitempty"` // the last failure, while down
	BytesIn  int64     `json:"bytes_in"`
	BytesOut int64     `json:"bytes_out"`
	// DownSince is when it went down: its first failure since it last
	// answered, or when the tracker stopped listing it; zero unless down.
	DownSince time.Time `json:"down_since,omitzero"`
	// Listed reports whether the tracker's last UPDATE lists it; a peer
	// that is not listed keeps its folder (see remote/presence.go).
	Listed bool `json:"listed"`
	// UnlistedSince is when the tracker stopped listing it (for a peer
	// restored at start, when it was last seen); zero while listed.
	UnlistedSince time.Time `json:"unlisted_since,omitzero"`
	// Watched is how many of its directories the peer watches for this
	// mount now (it reports their changes: remote/watch.go).
	Watched int `json:"watched"`
	// Foreign counts the changes the peer reported that another writer
	// made to names this mount had told the kernel of: each had the
	// kernel drop what it held of the name (fusefs.EntryWatcher).
	Foreign uint64 `json:"foreign_changes"`
}

// Attr returns the report of one peer as the value of a peer folder's
// extended attribute (user.peerfs.peer): the state, then key=value
// words, times in RFC 3339 UTC:
//
//	up addr=10.0.0.5:7071 tracker=listed
//	down since=2026-05-01T10:00:00Z addr=10.0.0.9:7071 tracker=unlisted unlisted-since=2026-05-01T10:00:12Z
func (p PeerReport) Attr() string {
	var b strings.Builder
	b.WriteString(p.State)
	if !p.DownSince.IsZero() {
		b.WriteString(" since=" + p.DownSince.UTC().Format(time.RFC3339))
	}
	b.WriteString(" addr=" + p.Addr)
	if p.Listed {
		b.WriteString(" tracker=listed")
	} else {
		b.WriteString(" tracker=unlisted")
		if !p.UnlistedSince.IsZero() {
			b.WriteString(" unlisted-since=" + p.UnlistedSince.UTC().Format(time.RFC3339))
		}
	}
	return b.String()
}

// PendingReport counts the local changes not yet stored on their peer.
type PendingReport struct {
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Oldest time.Time `json:"oldest,omitzero"` // when the oldest dirty copy turned dirty
	// OldestAge is the age of Oldest in seconds (0 if nothing is pending).
	OldestAge float64 `json:"oldest_age_s"`
	// Removals counts the changes to names and directories' attributes
	// acknowledged here and not yet carried out on their peer (written
	// behind: unlinks, rmdirs, renames, mkdirs, setattrs).
	Removals int `json:"removals"`
}

// CacheReport is the local cache's use (cache.Stats).
type CacheReport struct {
	Entries    int    `json:"entries"`
	Bytes      int64  `json:"bytes"`
	MaxBytes   int64  `json:"max_bytes"`
	DirtyFiles int    `json:"dirty_files"`
	DirtyBytes int64  `json:"dirty_bytes"`
	Pinned     int    `json:"pinned"`
	OverLimit  bool   `json:"over_limit"`
	Hits       uint64 `json:"hits"`
	Misses     uint64 `json:"misses"`
	Evictions  uint64 `json:"evictions"`
}

// Report returns the status report.
func (s *Store) Report() Report {
	now := time.Now()
	r := Report{Name: s.opts.Self, Time: now, Peers: []PeerReport{}}
	s.mu.Lock()
	sy := s.syncer
	s.mu.Unlock()
	r.Peers = s.peerReports(now)
	if sy != nil {
		st := sy.State()
		r.Tracker.Registered, r.Tracker.Error = st.Registered, st.Error
		r.Sync = SyncReport{InRound: st.InRound, Holding: st.Holding, LastRound: st.LastRound, Waiting: st.Waiting}
	}
	r.Pending.Files, r.Pending.Bytes = s.PendingInfo()
	r.Pending.Removals = s.ns.pendingAll()
	r.Unsent = s.Unsent()
	if r.Unsent == nil {
		r.Unsent = []Unsent{}
	}
	if _, _, oldest := s.cache.DirtyInfo(); !oldest.IsZero() && r.Pending.Files > 0 {
		r.Pending.Oldest = oldest
		r.Pending.OldestAge = now.Sub(oldest).Seconds()
	}
	cs := s.cache.Stats()
	r.Cache = CacheReport{
		Entries: cs.Entries, Bytes: cs.Bytes, MaxBytes: cs.MaxBytes,
		DirtyFiles: cs.DirtyFiles, DirtyBytes: cs.DirtyBytes, Pinned: cs.Pinned,
		OverLimit: cs.OverLimit, Hits: cs.Hits, Misses: cs.Misses, Evictions: cs.Evictions,
	}
	s.health.mu.Lock()
	info := s.health.info
	s.health.mu.Unlock()
	r.Version, r.Mountpoint, r.PID, r.Tracker.Addr = info.Version, info.Mountpoint, info.PID, info.Tracker
	return r
}

// peerReports returns every peer's report, sorted by name.
func (s *Store) peerReports(now time.Time) []PeerReport {
	s.mu.Lock()
	peers := make([]*peerConn, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	unlisted := maps.Clone(s.unlisted)
	s.mu.Unlock()
	out := make([]PeerReport, 0, len(peers))
	for _, p := range peers {
		pr := p.link.report()
		pr.Watched, pr.Foreign = p.attrs.watchCounts()
		if since, ok := unlisted[p.name]; ok {
			pr.Listed, pr.UnlistedSince = false, since
			// Unlisted and not heard from since: down, since then at
			// the latest.
			if pr.State != "up" || pr.LastSeen.Before(since) {
				if pr.State != "down" || pr.DownSince.IsZero() || since.Before(pr.DownSince) {
					pr.DownSince = since
				}
				pr.State = "down"
			}
		}
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b PeerReport) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PeerState implements fusefs.PeerStater: the peer's report as its
// folder's attribute (PeerReport.Attr).
func (s *Store) PeerState(name string) (string, error) {
	for _, p := range s.peerReports(s.now()) {
		if p.Name == name {
			return p.Attr(), nil
		}
	}
	return "", errNoPeer
}

// PeersUp returns how many peers answered their last request, and how
// many are known.
func (s *Store) PeersUp() (up, known int) {
	for _, p := range s.Report().Peers {
		known++
		if p.State == "up" {
			up++
		}
	}
	return up, known
}

// StatusText implements fusefs.Controller: the report as text.
func (s *Store) StatusText() []byte { return []byte(s.Report().Text()) }

// Text formats the report for people.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "peerfs %s", r.Name)
	if r.Version != "" {
		fmt.Fprintf(&b, " (version %s)", r.Version)
	}
	if r.Mountpoint != "" {
		fmt.Fprintf(&b, " mounted on %s", r.Mountpoint)
	}
	if r.PID != 0 {
		fmt.Fprintf(&b, ", pid %d", r.PID)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	reg := "not registered"
	if r.Tracker.Registered {
		reg = "registered"
	} else if r.Tracker.Error != "" {
		reg += ": " + r.Tracker.Error
	}
	tracker := r.Tracker.Addr
	if tracker == "" {
		tracker = "(none)"
	}
	fmt.Fprintf(tw, "tracker:\t%s, %s\n", tracker, reg)
	round := "idle"
	if r.Sync.InRound {
		round = "round in progress"
		if r.Sync.Holding {
			round += ", holding the write token"
		}
	}
	fmt.Fprintf(tw, "sync:\t%s; last round %d; %d waiting\n", round, r.Sync.LastRound, r.Sync.Waiting)
	if r.Pending.Files == 0 {
		fmt.Fprintf(tw, "uploads:\tnothing pending\n")
	} else {
		fmt.Fprintf(tw, "uploads:\t%d files pending, %s, oldest %s old\n", r.Pending.Files, byteSize(r.Pending.Bytes), age(time.Duration(r.Pending.OldestAge*float64(time.Second))))
	}
	if r.Pending.Removals > 0 {
		fmt.Fprintf(tw, "written behind:\t%d changes (removals, renames, mkdirs...) not yet on their peers\n", r.Pending.Removals)
	}
	if n := len(r.Unsent); n > 0 {
		var size int64
		for _, u := range r.Unsent {
			size += u.Size
		}
		fmt.Fprintf(tw, "unsent:\t%d files, %s, that their peers refused or that are not theirs: kept, not retried (peerfs unsent; .peerfs/unsent)\n", n, byteSize(size))
	}
	c := r.Cache
	over := ""
	if c.OverLimit {
		over = " (over the bound: pinned or unuploaded data)"
	}
	fmt.Fprintf(tw, "cache:\t%d files, %s of %s%s; %d dirty (%s); %d hits, %d misses, %d evictions\n",
		c.Entries, byteSize(c.Bytes), byteSize(c.MaxBytes), over, c.DirtyFiles, byteSize(c.DirtyBytes), c.Hits, c.Misses, c.Evictions)
	fmt.Fprintf(tw, "peers:\t%d\n", len(r.Peers))
	tw.Flush()
	if len(r.Peers) > 0 {
		tw = tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tADDRESS\tSTATE\tRTT\tLAST SEEN\tIN\tOUT\t")
		for _, p := range r.Peers {
			rtt, seen := "-", "never"
			if p.RTT > 0 {
				rtt = fmt.Sprintf("%.1fms", p.RTT)
			}
			if !p.LastSeen.IsZero() {
				seen = age(r.Time.Sub(p.LastSeen)) + " ago"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Name, p.Addr, p.State, rtt, seen, byteSize(p.BytesIn), byteSize(p.BytesOut))
		}
		tw.Flush()
		for _, p := range r.Peers {
			var notes []string
			if !p.DownSince.IsZero() {
				notes = append(notes, "down since "+when(p.DownSince, r.Time))
			}
			if !p.Listed {
				note := "not listed by the tracker"
				if !p.UnlistedSince.IsZero() {
					note += " since " + when(p.UnlistedSince, r.Time)
				}
				notes = append(notes, note+"; its folder stays until it returns, leaves on purpose or `peerfs forget "+p.Name+"`")
			}
			if len(notes) > 0 {
				fmt.Fprintf(&b, "  %s: %s\n", p.Name, strings.Join(notes, "; "))
			}
			if p.Error != "" {
				fmt.Fprintf(&b, "  %s: %s\n", p.Name, p.Error)
			}
		}
	}
	if len(r.Unsent) > 0 {
		b.WriteString("unsent copies:\n")
		for _, u := range r.Unsent {
			fmt.Fprintf(&b, "  %s (%s, %s old): %s\n", u.As, byteSize(u.Size), age(r.Time.Sub(u.Since)), u.Reason)
		}
	}
	return b.String()
}

// when formats a moment for people, with its age at now.
func when(t, now time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05") + " (" + age(now.Sub(t)) + " ago)"
}

// age formats a duration for people: 850ms, 12s, 3m4s, 2h5m.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return strings.TrimSuffix(d.Round(time.Second).String(), "0s")
	default:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
}

// byteSize formats a size in bytes with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ReportInfo is what the Store cannot know itself but its status report
// shows; the daemon sets it with SetReportInfo.
type ReportInfo struct {
	Version    string
	Mountpoint string
	Tracker    string // tracker host:port; "" if none
	PID        int    // the daemon's process id
}

// SetReportInfo sets what the status report shows beyond the Store's own
// knowledge.
func (s *Store) SetReportInfo(info ReportInfo) {
	s.health.mu.Lock()
	s.health.info = info
	s.health.mu.Unlock()
}
