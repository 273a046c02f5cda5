package remote

// Review of bb24729: cases where another user's bytes (or truncation)
// still ended setuid on the peer. (Its third point, that the clearing
// chmod waits for a stalled peer's setid PUT up to that PUT's own
// deadline, not the caller's request, is documented in SECURITY.md.)

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peerproto"
)

// TestSetidReviewPartialKillKeepsSetuidOnHerBytes: a file 06767 (setuid,
// setgid, its group may not execute it, others may). A member of its
// group writes to it: fusefs killSuidgid clears setuid only (setgid stays,
// as on a local disk: TestMountKillSuidgid's "member of the group" case),
// i.e. Chmod(02767), then WriteAt. Her own upload then says setid (the
// copy still has setgid: setidBegin/setidFor test privModes as a whole),
// and the peer keeps the bits the file has there, setuid included (the
// local chmod only goes as a SETATTR after the PUT): her bytes are a
// setuid-root program on the peer, which others may execute, until that
// SETATTR arrives. No upload by root is involved.
func TestSetidReviewPartialKillKeepsSetuidOnHerBytes(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the peer must own the file it keeps setuid")
	}
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT DONE")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o767|os.ModeSetuid|os.ModeSetgid)

	her := s.open(t, "dan", "prog", os.O_WRONLY, 0)
	// fusefs.killOnWrite for a caller in the file's group: setuid goes,
	// setgid (no group execute) stays.
	if _, err := s.Chmod(ctx, "dan", "prog", 0o767|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s.write(t, her, "#!/bin/sh\necho EVIL\n", 0)
	done := s.flushAsync(t, her)
	<-held
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dan.content(t, "prog"), "EVIL") && fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("her bytes are on the peer with mode %v: setuid kept by her own PUT (setid, because setgid was left here)", fi.Mode())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.release(t, her)
	if fi, err := os.Stat(dan.path("prog")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("after the SETATTR: %v %v", fi.Mode(), err)
	}
}

// TestSetidReviewOTruncRidesSetidPut: another user's open(O_TRUNC) of a
// setuid file while root's setid upload of it is under way. fusefs
// clears the bits first (file.Open: killOnWrite, then Store.Open; it
// truncated first before, TestSetidReviewKillBeforeOTrunc), and that
// Chmod waits for root's PUT: the truncated content never rides in it,
// and the peer never holds an empty setuid file.
func TestSetidReviewOTruncRidesSetidPut(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT DONE")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o777|os.ModeSetuid)

	root := s.open(t, "dan", "prog", os.O_WRONLY|os.O_APPEND, 0)
	s.write(t, root, "echo root\n", 0) // root's: no kill
	done := s.flushAsync(t, root)      // root's close: a setid PUT
	<-held
	type openResult struct {
		fh  uint64
		err error
	}
	opened := make(chan openResult, 1)
	go func() { // her open(O_TRUNC): the kill's Chmod, then the open
		if _, err := s.Chmod(ctx, "dan", "prog", 0o777); err != nil {
			opened <- openResult{err: err}
			return
		}
		fh, _, err := s.Open(ctx, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
		opened <- openResult{fh, err}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-opened:
		t.Fatal("her open(O_TRUNC) went through while root's setid upload was under way")
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := <-opened
	if r.err != nil {
		t.Fatalf("her open(O_TRUNC): %v", r.err)
	}
	her := r.fh
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if dan.content(t, "prog") == "" && fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("her truncation rode root's setid PUT: the peer holds an empty file with mode %v", fi.Mode())
	}
	if err := s.Flush(ctx, her); err != nil {
		t.Fatal(err)
	}
	s.release(t, her)
	s.release(t, root)
	if fi, err = os.Stat(dan.path("prog")); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		t.Errorf("after her truncation was stored: %v, %v; want no setuid bit", fi.Mode(), err)
	}
}

// TestSetidReviewPartialKillInRootsUpload: the partial kill of
// TestSetidReviewPartialKillKeepsSetuidOnHerBytes during root's upload
// (a stream, as in TestSetuidStreamDroppedOnOthersBytes). Her write drops
// setuid here, keeps setgid: the stream is given up (she wrote below what
// it sent) and the copy goes whole, but still with setid (setgid is left
// here), so the peer keeps setuid on content that holds her bytes; root's
// upload then asks the peer what it kept (keepPriv's STAT) and sends no
// SETATTR: the file stays so after root's close returns.
func TestSetidReviewPartialKillInRootsUpload(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the peer must own the file it keeps setuid")
	}
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT OK")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o767|os.ModeSetuid|os.ModeSetgid)
	root := s.open(t, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, root, "#!/bin/sh\n"+strings.Repeat("#", 2<<20)+"\n", 0) // streamed
	done := s.flushAsync(t, root)
	<-held
	// Her write, a member of the file's group: setuid goes, setgid stays.
	if _, err := s.Chmod(ctx, "dan", "prog", 0o767|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	her := s.open(t, "dan", "prog", os.O_WRONLY, 0)
	s.write(t, her, "EVIL", 0)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(dan.content(t, "prog"), "EVIL") && fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("after root's close: her bytes are on the peer with mode %v", fi.Mode())
	}
	time.Sleep(2 * time.Second) // the retry loop runs every 20 ms here
	if fi, err := os.Stat(dan.path("prog")); err == nil && strings.HasPrefix(dan.content(t, "prog"), "EVIL") && fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("2 s later, with her handle still open: still %v", fi.Mode())
	}
	s.release(t, root)
	s.release(t, her)
}
