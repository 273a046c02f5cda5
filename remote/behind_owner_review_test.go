package remote

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// TestReviewMkdirOwnedReplayedToPeerWithoutOwners: a mkdir written behind
// on a peer that keeps owners (journalled with uid= gid=) is still queued
// when the mount dies; the peer comes back on the same export without
// --owners (no mkdir-owner in its FEATURES). The next run sends the
// journalled MKDIR with uid= gid= regardless, the peer refuses it (denied)
// and the directory, acknowledged to the program, is never made: the
// sender does not look at the features of the connection it replays on.
// A plain MKDIR would have made it (the peer shows every file as its own
// user's anyway).
func TestReviewMkdirOwnedReplayedToPeerWithoutOwners(t *testing.T) {
	carol := ownerPeer(t)
	dir := t.TempDir()
	ctx := journalOwnedMkdir(t, carol, dir)
	// The same export, served again without --owners.
	carol.stop()
	again := startPeerWith(t, export.Options{Export: carol.export})
	second := newStoreWith(t, dir, func(o *Options) { o.Logger = zerolog.New(zerolog.NewTestWriter(t)) })
	second.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: again.addr}})
	second.drainReplayed(t, ctx)
	if !again.exists(t, "x") {
		t.Errorf("x, a mkdir acknowledged by the first run, was not made by the replay on a peer that no longer keeps owners")
	}
}

// TestReviewMkdirOwnedInSetgidRootNotStated: the export root of a peer
// that keeps owners is setgid (group 777). The mount has listed the root
// (so a new name there is known absent) but never STATed the root itself:
// mkdirBehind takes lastRoot(), a made-up plain 0755 directory without
// AttrGid, as a parent known not to be setgid, and writes the mkdir
// behind showing the caller's group and no setgid bit. The peer makes
// it with the root's group 777 and setgid (as mkdir(2) in a setgid
// directory), so what the mount answered is not what the peer has. (The
// guard "a setgid parent whose group is not known goes synchronously"
// does not cover a parent whose mode is not known at all.)
func TestReviewMkdirOwnedInSetgidRootNotStated(t *testing.T) {
	carol := ownerPeer(t)
	if err := os.Chown(carol.export, 0, 777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(carol.export, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: carol.addr}})
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	s.names(t, "carol", "")
	mkdirTopMatches(t, s, carol, ctx)
	fi, err := s.Stat(ctx, "carol", "top")
	if err != nil {
		t.Fatal(err)
	}
	if st := statOfInfo(t, fi); st.Gid != 777 || peerproto.UnixBits(fi.Mode()) != 0o2750 {
		t.Errorf("after the flush, Stat shows mode %o gid %d; the peer has 2750 gid 777", peerproto.UnixBits(fi.Mode()), st.Gid)
	}
}

// TestReviewMkdirOwnedInRootMadeSetgidSince: as above, with the root's
// attributes known but old: STATed (the kernel's lookup of the peer
// folder, a shell's cd into it) while plain, made setgid of group 777 on
// the peer afterwards, and listed again after the attribute TTL (ls).
// lastRoot() returns the root's last known attributes however old, and
// the mkdir is written behind showing the caller's group, no setgid bit.
func TestReviewMkdirOwnedInRootMadeSetgidSince(t *testing.T) {
	carol := ownerPeer(t)
	clock := newFakeClock()
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL, o.Now = 50*time.Millisecond, clock.Now })
	s.SetPeers([]peerproto.PeerAddr{{Name: "carol", Addr: carol.addr}})
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	if _, err := s.Stat(ctx, "carol", ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(carol.export, 0, 777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(carol.export, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	clock.advance(200 * time.Millisecond) // past the attribute TTL
	s.names(t, "carol", "")
	mkdirTopMatches(t, s, carol, ctx)
}

// mkdirTopMatches makes top (0750) in carol's root, setgid of group 777,
// as user 1234, flushes, and checks that the peer made it 2750 1234:777
// and that the mount answered the same.
func mkdirTopMatches(t *testing.T, s *testStore, carol *testPeer, ctx context.Context) {
	t.Helper()
	fi, err := s.Mkdir(ctx, "carol", "top", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, carol, "top", 1234, 777, 0o2750) // what the peer made
	if st := statOfInfo(t, fi); st.Uid != 1234 || st.Gid != 777 || peerproto.UnixBits(fi.Mode()) != 0o2750 {
		t.Errorf("Mkdir answered mode %o uid %d gid %d; the peer has 2750 1234 777", peerproto.UnixBits(fi.Mode()), st.Uid, st.Gid)
	}
}
