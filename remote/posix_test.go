package remote

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// A peer folder in whole-filesystem mode: a store talking to bob (a peer
// with default settings) and carol (one that trusts the cluster: owners,
// devices, setuid bits), both real export servers.
type posixFixture struct {
	s          *testStore
	bob, carol *testPeer
	calls      *verbCounter
}

func newPosixFixture(t *testing.T) *posixFixture {
	t.Helper()
	s, bob, vc := countedStore(t)
	carol := startPeerWith(t, export.Options{Export: t.TempDir(), Owners: true, AllowDevices: true, AllowSetuid: true})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}, {Name: "carol", Addr: carol.addr}})
	return &posixFixture{s: s, bob: bob, carol: carol, calls: vc}
}

func lstatSys(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func statOfInfo(t *testing.T, fi fs.FileInfo) *fusefs.Stat {
	t.Helper()
	st := fusefs.StatOf(fi)
	if st == nil {
		t.Fatalf("%s: no whole-filesystem attributes (Sys %T)", fi.Name(), fi.Sys())
	}
	return st
}

// Symbolic links are made on the peer as they are, and read back from
// the attributes a listing or STAT carried, without a READLINK.
func TestSymlinkReadlink(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	fi, err := x.s.Symlink(ctx, "bob", "l", "../no/such/target")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSymlink || fi.Size() != int64(len("../no/such/target")) {
		t.Errorf("symlink's info: mode %v size %d", fi.Mode(), fi.Size())
	}
	if got, err := os.Readlink(x.bob.path("l")); err != nil || got != "../no/such/target" {
		t.Errorf("on disk: %q %v", got, err)
	}
	x.calls.take()
	if got, err := x.s.Readlink(ctx, "bob", "l"); err != nil || got != "../no/such/target" {
		t.Errorf("Readlink: %q %v", got, err)
	}
	if n := x.calls.take()["READLINK"]; n != 0 {
		t.Errorf("%d READLINKs for a link whose target the cache holds", n)
	}
	if err := os.Symlink("planted", x.bob.path("p")); err != nil {
		t.Fatal(err)
	}
	if got, err := x.s.Readlink(ctx, "bob", "p"); err != nil || got != "planted" {
		t.Errorf("Readlink of a link the cache does not know: %q %v", got, err)
	}
	if _, err := x.s.Symlink(ctx, "bob", "l", "x"); errnoOf(err) != syscall.EEXIST {
		t.Errorf("symlink over a link: %v, want EEXIST", err)
	}
	if _, err := x.s.Readlink(ctx, "bob", "missing"); errnoOf(err) != syscall.ENOENT {
		t.Errorf("Readlink of a missing name: %v", err)
	}
}

// Hard links: the new name is the old inode's, and every name's link
// count follows links made and removed through any of them. A file
// created here goes up before it is linked. rename(2) of one name of a
// file onto another leaves both.
func TestLinkNamesOneInode(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	fh := x.s.open(t, "bob", "f", os.O_CREATE|os.O_RDWR, 0o644)
	x.s.write(t, fh, "shared", 0)
	fi, err := x.s.Link(ctx, "bob", "f", "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := x.bob.content(t, "g"); got != "shared" {
		t.Errorf("the link's content on the peer: %q (the file was not uploaded first?)", got)
	}
	if st := statOfInfo(t, fi); st.Ino != lstatSys(t, x.bob.path("f")).Ino || st.Nlink != 2 {
		t.Errorf("Link's info: ino %d nlink %d, want f's inode, 2", st.Ino, st.Nlink)
	}
	x.s.write(t, fh, "SHARED", 0)
	if err := x.s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	x.s.release(t, fh)
	if got := x.bob.content(t, "g"); got != "SHARED" {
		t.Errorf("g after writing f: %q", got)
	}
	if fi, err := x.s.Stat(ctx, "bob", "g"); err != nil || statOfInfo(t, fi).Nlink != 2 || fi.Size() != 6 {
		t.Errorf("Stat g after the upload of f: %v %v", fi, err)
	}
	if err := x.s.Remove(ctx, "bob", "f"); err != nil {
		t.Fatal(err)
	}
	if fi, err := x.s.Stat(ctx, "bob", "g"); err != nil || statOfInfo(t, fi).Nlink != 1 {
		t.Errorf("Stat g after unlink of f: %v %v, want one link", fi, err)
	}

	if _, err := x.s.Link(ctx, "bob", "g", "h"); err != nil {
		t.Fatal(err)
	}
	if err := x.s.Rename(ctx, "bob", "g", "h"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"g", "h"} {
		if fi, err := x.s.Stat(ctx, "bob", name); err != nil || statOfInfo(t, fi).Nlink != 2 {
			t.Errorf("%s after rename of one name of a file onto the other: %v %v", name, fi, err)
		}
	}
	if _, err := x.s.Link(ctx, "bob", "missing", "x"); errnoOf(err) != syscall.ENOENT {
		t.Errorf("link of a missing file: %v", err)
	}
}

// Special files: FIFOs and sockets on any peer, devices only on one that
// allows them (EPERM from the others, without asking them).
func TestMknod(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	fi, err := x.s.Mknod(ctx, "bob", "p", fs.ModeNamedPipe|0o640, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != fs.ModeNamedPipe|0o640 {
		t.Errorf("FIFO's mode %v", fi.Mode())
	}
	if st := lstatSys(t, x.bob.path("p")); st.Mode != syscall.S_IFIFO|0o640 {
		t.Errorf("FIFO on disk: mode %#o", st.Mode)
	}
	if _, err := x.s.Mknod(ctx, "bob", "s", fs.ModeSocket|0o600, 0, 0); err != nil {
		t.Fatal(err)
	}
	x.calls.take()
	if _, err := x.s.Mknod(ctx, "bob", "null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3); errnoOf(err) != syscall.EPERM {
		t.Errorf("a device on a peer that makes none: %v, want EPERM", err)
	}
	if n := x.calls.take()["MKNOD"]; n != 0 {
		t.Errorf("%d MKNODs sent for a device the peer makes none of", n)
	}
	if os.Getuid() != 0 {
		t.Skip("skipping devices on the trusting peer: not root")
	}
	fi, err = x.s.Mknod(ctx, "carol", "null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if st := statOfInfo(t, fi); st.Major != 1 || st.Minor != 3 || fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
		t.Errorf("device's info: %v %d,%d", fi.Mode(), st.Major, st.Minor)
	}
}

// Owners: a peer that keeps them (--owners) gives what the mount makes
// the creating process's owner, and its group unless the directory is
// setgid; chown works there and is EPERM elsewhere. Modes arrive
// exactly, setuid, setgid and sticky bits included, and mode 0000 too.
func TestOwnersAndModes(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipping: owners need root on the peer")
	}
	x := newPosixFixture(t)
	ctx := fusefs.WithCaller(testCtx(t), fusefs.Caller{Uid: 1234, Gid: 5678})
	if _, err := x.s.Mkdir(ctx, "carol", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := x.s.Symlink(ctx, "carol", "l", "d"); err != nil {
		t.Fatal(err)
	}
	fh, _, err := x.s.Open(ctx, "carol", "f", os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := x.s.Stat(ctx, "carol", "f"); err != nil || statOfInfo(t, fi).Uid != 1234 || !statOfInfo(t, fi).Owners {
		t.Errorf("a file created here, before its upload: %v %v", fi, err)
	}
	if err := x.s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	x.s.release(t, fh)
	for _, name := range []string{"d", "l", "f"} {
		if st := lstatSys(t, x.carol.path(name)); st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("%s made by 1234:5678: owned by %d:%d on the peer", name, st.Uid, st.Gid)
		}
	}
	if _, err := x.s.Chmod(ctx, "carol", "d", 0o777|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if _, err := x.s.Mkdir(ctx, "carol", "d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := x.s.FlushAll(ctx); err != nil { // (the mkdir may be written behind)
		t.Fatal(err)
	}
	if st := lstatSys(t, x.carol.path("d/sub")); st.Uid != 1234 || st.Gid != 5678 || st.Mode&syscall.S_ISGID == 0 {
		t.Errorf("a directory made in a setgid one: %d:%d mode %#o, want 1234:5678 (the directory's) and setgid", st.Uid, st.Gid, st.Mode)
	}
	if _, err := x.s.Chown(ctx, "carol", "f", 42, -1); err != nil {
		t.Fatal(err)
	}
	if st := lstatSys(t, x.carol.path("f")); st.Uid != 42 || st.Gid != 5678 {
		t.Errorf("after chown 42: %d:%d", st.Uid, st.Gid)
	}
	if _, err := x.s.Chown(ctx, "carol", "l", 43, 43); err != nil {
		t.Fatal(err)
	}
	if st := lstatSys(t, x.carol.path("l")); st.Uid != 43 {
		t.Errorf("lchown of a link: owner %d", st.Uid)
	}

	// bob keeps no owners: his files show no owner, and chown is EPERM.
	x.s.put(t, "f", "x") // on bob
	if fi, err := x.s.Stat(ctx, "bob", "f"); err != nil || fusefs.StatOf(fi) != nil && fusefs.StatOf(fi).Owners {
		t.Errorf("a file of a peer without --owners: %v %v, want no owners shown", fi, err)
	}
	if _, err := x.s.Chown(ctx, "bob", "f", 42, -1); errnoOf(err) != syscall.EPERM {
		t.Errorf("chown on a peer without --owners: %v, want EPERM", err)
	}

	for _, tc := range []struct {
		peer string
		mode fs.FileMode
		want uint32
	}{
		{"bob", 0, 0},
		{"bob", 0o777 | fs.ModeSticky, 0o1777},
		{"carol", 0o750 | fs.ModeSticky, 0o1750},
	} {
		name := "m" + tc.mode.String()
		if _, err := x.s.Mkdir(ctx, tc.peer, name, tc.mode); err != nil {
			t.Fatal(err)
		}
		if got := lstatSys(t, x.path(tc.peer, name)).Mode & 0o7777; got != tc.want {
			t.Errorf("mkdir %v on %s: %#o, want %#o", tc.mode, tc.peer, got, tc.want)
		}
	}
	if _, err := x.s.Chmod(ctx, "carol", "f", 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if got := lstatSys(t, x.carol.path("f")).Mode & 0o7777; got != 0o4755 {
		t.Errorf("chmod 4755 on a peer with --allow-setuid: %#o", got)
	}
}

func (x *posixFixture) path(peer, name string) string {
	if peer == "bob" {
		return x.bob.path(name)
	}
	return x.carol.path(name)
}

// Times: both set exactly, one left alone (UTIME_OMIT), or set to the
// peer's clock (UTIME_NOW); the change time is the peer's own.
func TestChtimes(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	x.s.put(t, "f", "x")
	at, mt := time.Unix(1_500_000_000, 123_456_789), time.Unix(1_600_000_000, 987_654_321)
	fi, err := x.s.Chtimes(ctx, "bob", "f", fusefs.TimeChange{Set: true, T: at}, fusefs.TimeChange{Set: true, T: mt})
	if err != nil {
		t.Fatal(err)
	}
	if st := statOfInfo(t, fi); !st.Atime.Equal(at) || !fi.ModTime().Equal(mt) || st.Ctime.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("after utimens: atime %v mtime %v ctime %v", st.Atime, fi.ModTime(), st.Ctime)
	}
	before := time.Now()
	fi, err = x.s.Chtimes(ctx, "bob", "f", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, Now: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := statOfInfo(t, fi); !st.Atime.Equal(at) || fi.ModTime().Before(before.Add(-time.Second)) {
		t.Errorf("atime omitted, mtime now: atime %v mtime %v", st.Atime, fi.ModTime())
	}
	st := lstatSys(t, x.bob.path("f"))
	if time.Unix(st.Atim.Unix()) != at {
		t.Errorf("the peer's atime: %v", time.Unix(st.Atim.Unix()))
	}
}

// A directory's attributes are fresh as soon as this mount made or
// removed an entry in it (its times, its link count), without a STAT
// of their own: they come with the request.
func TestParentAttrsFollowChanges(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	if _, err := x.s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := x.s.Stat(ctx, "bob", "d")
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, nlink uint32) {
		t.Helper()
		x.calls.take()
		now, err := x.s.Stat(ctx, "bob", "d")
		if err != nil {
			t.Fatal(err)
		}
		if n := x.calls.take()["STAT"]; n != 0 {
			t.Errorf("after %s: %d STATs of the directory", what, n)
		}
		if !now.ModTime().After(d.ModTime()) || !statOfInfo(t, now).Ctime.After(statOfInfo(t, d).Ctime) || statOfInfo(t, now).Nlink != nlink {
			t.Errorf("after %s: mtime %v ctime %v nlink %d; before %v %v", what, now.ModTime(), statOfInfo(t, now).Ctime,
				statOfInfo(t, now).Nlink, d.ModTime(), statOfInfo(t, d).Ctime)
		}
		d = now
	}
	pause := func() { time.Sleep(20 * time.Millisecond) } // a later time on any clock
	pause()
	if _, err := x.s.Mkdir(ctx, "bob", "d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	check("mkdir", 3)
	pause()
	fh := x.s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY, 0o644)
	if err := x.s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	x.s.release(t, fh)
	check("a create's upload", 3)
	pause()
	if err := x.s.Rename(ctx, "bob", "d/f", "d/g"); err != nil {
		t.Fatal(err)
	}
	check("rename", 3)
	pause()
	if err := x.s.Remove(ctx, "bob", "d/g"); err != nil {
		t.Fatal(err)
	}
	check("unlink", 3)
	pause()
	if err := x.s.Rmdir(ctx, "bob", "d/sub"); err != nil {
		t.Fatal(err)
	}
	check("rmdir", 2)
}

// A file removed while open here stays readable through its descriptor,
// and writable if open for writing, as on a local disk: a reader's copy
// is fetched before the peer deletes it, a writer's local copy is kept.
func TestRemoveOpenFileKeepsData(t *testing.T) {
	x := newPosixFixture(t)
	ctx := testCtx(t)
	x.bob.writeFile(t, "r", []byte("read me"), 0o644)
	rfh := x.s.open(t, "bob", "r", os.O_RDONLY, 0)
	wfh := x.s.open(t, "bob", "w", os.O_CREATE|os.O_RDWR, 0o644)
	x.s.write(t, wfh, "kept", 0)
	// An existing file written here holds only what was written (a
	// partial copy); the rest is fetched before the name goes.
	x.bob.writeFile(t, "e", []byte("existing content"), 0o644)
	efh := x.s.open(t, "bob", "e", os.O_RDWR, 0)
	x.s.write(t, efh, "E", 0)
	for _, name := range []string{"r", "w", "e"} {
		if err := x.s.Remove(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
		if _, err := x.s.Stat(ctx, "bob", name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat %s after Remove: %v", name, err)
		}
	}
	if got := string(x.s.readAll(t, rfh, 100)); got != "read me" {
		t.Errorf("a reader of a removed file reads %q", got)
	}
	x.s.write(t, wfh, "still writable", 4)
	if fi, err := x.s.TruncateHandle(ctx, wfh, 10); err != nil || fi.Size() != 10 {
		t.Fatalf("TruncateHandle: %v %v", fi, err)
	}
	if got := string(x.s.readAll(t, wfh, 100)); got != "keptstill " {
		t.Errorf("a writer of a removed file reads %q", got)
	}
	if got := string(x.s.readAll(t, efh, 100)); got != "Existing content" {
		t.Errorf("a writer of a removed file it had written a byte of reads %q", got)
	}
	x.s.release(t, efh)
	if fi, err := x.s.StatHandle(ctx, rfh); err != nil || fi.Size() != 7 {
		t.Errorf("StatHandle of the reader: %v %v", fi, err)
	}
	if err := x.s.Flush(ctx, wfh); err != nil {
		t.Fatal(err)
	}
	x.s.release(t, rfh)
	x.s.release(t, wfh)
	if x.bob.exists(t, "w") {
		t.Error("the removed file was uploaded again at close")
	}
}
