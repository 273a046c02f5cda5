package remote

import (
	"context"
	"os"
	"testing"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// ownerPeer is a peer that keeps owners (--owners), with a setgid
// directory sg of group 777 in its export.
func ownerPeer(t *testing.T) *testPeer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a peer that keeps owners gives directories away: needs root")
	}
	carol := startPeerWith(t, export.Options{Export: t.TempDir(), Owners: true})
	if err := os.Mkdir(carol.path("sg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(carol.path("sg"), 0, 777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(carol.path("sg"), 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	return carol
}

// checkOwned fails the test unless directory name on p has owner uid,
// group gid and permission bits mode (setgid included).
func checkOwned(t *testing.T, p *testPeer, name string, uid, gid, mode uint32) {
	t.Helper()
	st := lstatSys(t, p.path(name))
	if st.Mode&0o170000 != 0o040000 || st.Uid != uid || st.Gid != gid || st.Mode&0o7777 != mode {
		t.Errorf("%s on the peer: mode %o uid %d gid %d, want a directory %o %d %d", name, st.Mode, st.Uid, st.Gid, mode, uid, gid)
	}
}

// TestMkdirOwnedWrittenBehind: on a peer that keeps owners and makes a
// directory with the owner MKDIR names, a mkdir is written behind too: it
// shows at once with the caller's owner (and a setgid parent's group and
// bit), and reaches the peer made so by its MKDIR, without a SETATTR.
func TestMkdirOwnedWrittenBehind(t *testing.T) {
	carol := ownerPeer(t)
	vc := &verbCounter{n: map[string]int{}}
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.Observer = vc })
	s.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: gateProxy(t, carol.addr, "MKDIR", release)}})
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	s.names(t, "carol", "")
	statRoot(t, s, "carol")
	s.names(t, "carol", "sg")
	for _, c := range []struct {
		name           string
		uid, gid, mode uint32
	}{{"a", 1234, 5678, 0o750}, {"sg/b", 1234, 777, 0o2750}} {
		returnsSoon(t, "Mkdir "+c.name, func() error {
			fi, err := s.Mkdir(ctx, "carol", c.name, 0o750)
			if err != nil {
				return err
			}
			if st := statOfInfo(t, fi); st.Uid != c.uid || st.Gid != c.gid || peerproto.UnixBits(fi.Mode()) != c.mode {
				t.Errorf("Mkdir %s answered %v uid %d gid %d, want %o %d %d", c.name, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
			}
			return nil
		})
		if carol.exists(t, c.name) {
			t.Fatalf("carol has %s while its MKDIR is held", c.name)
		}
	}
	vc.take()
	close(release)
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, carol, "a", 1234, 5678, 0o750)
	checkOwned(t, carol, "sg/b", 1234, 777, 0o2750)
	// (Round trips: both MKDIRs may go in one.)
	if got := vc.take(); got["MKDIR"] == 0 || got["SETATTR"] != 0 {
		t.Errorf("round trips: %v, want MKDIR and no SETATTR", got)
	}
}

// TestMkdirOwnedSync: a mkdir that cannot go behind (its parent not known
// here) is made with the caller's owner by its MKDIR alone.
func TestMkdirOwnedSync(t *testing.T) {
	carol := ownerPeer(t)
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.Observer = vc })
	s.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: carol.addr}})
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	if err := os.Mkdir(carol.path("sg/unknown"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Mkdir(ctx, "carol", "sg/unknown/c", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	if st := statOfInfo(t, fi); st.Uid != 1234 {
		t.Errorf("Mkdir answered uid %d", st.Uid)
	}
	checkOwned(t, carol, "sg/unknown/c", 1234, 777, 0o2700)
	if got := vc.take(); got["SETATTR"] != 0 {
		t.Errorf("requests: %v, want no SETATTR", got)
	}
}

// TestMkdirOwnedReplayedAfterCrash: a mkdir written behind on a peer that
// keeps owners, still queued when the mount dies, is made with its
// creator's owner by the next run.
func TestMkdirOwnedReplayedAfterCrash(t *testing.T) {
	carol := ownerPeer(t)
	dir := t.TempDir()
	ctx := journalOwnedMkdir(t, carol, dir)
	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: carol.addr}})
	second.drainReplayed(t, ctx)
	checkOwned(t, carol, "x", 1234, 5678, 0o751)
}

// statRoot has s ask peerName's export root for its attributes, as the
// kernel's lookup of the peer's folder does: a mkdir written behind needs
// its parent's fresh, the root's too (knownDir).
func statRoot(t *testing.T, s *testStore, peerName string) {
	t.Helper()
	if _, err := s.Stat(testCtx(t), peerName, ""); err != nil {
		t.Fatal(err)
	}
}

// journalOwnedMkdir has a first run of a Store with cache dir make x
// (0751) on carol as user 1234, group 5678, its MKDIR held back, and end
// with it in its journal, as when the mount dies. It returns the caller's
// context.
func journalOwnedMkdir(t *testing.T, carol *testPeer, dir string) context.Context {
	t.Helper()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: heldBackProxy(t, carol.addr, "MKDIR")}})
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	first.names(t, "carol", "")
	statRoot(t, first, "carol")
	if _, err := first.Mkdir(ctx, "carol", "x", 0o751); err != nil {
		t.Fatal(err)
	}
	first.close()
	if pend := first.cache.Journal().Pending(); len(pend) != 1 || pend[0].Uid == nil || *pend[0].Uid != 1234 || *pend[0].Gid != 5678 {
		t.Fatalf("journal when the first run ends: %+v", pend)
	}
	return ctx
}
