package main

import "fmt"

// allCases is every case, group by group. A group is named after the call
// it is about; each case is small (a few steps) and checks one thing.
func allCases() []testCase {
	var cs []testCase
	for _, group := range [][]testCase{
		openCases(), unlinkCases(), renameCases(), mkdirCases(), rmdirCases(),
		linkCases(), symlinkCases(), truncateCases(), utimeCases(),
		chmodCases(), chownCases(), mknodCases(), accessCases(), nameCases(), dirCases(),
	} {
		cs = append(cs, group...)
	}
	return cs
}

// kinds are the kinds of entry a case can make.
var kinds = []string{"regular", "dir", "fifo", "socket", "symlink", "char", "block"}

// mk is the step that makes an entry of a kind at path: a regular file
// of mode 0644, a directory 0755, a FIFO 0644, a bound socket, a dangling
// symbolic link, or a device (1,3 and 7,0, as /dev/null and loop0).
func mk(kind, path string) string {
	switch kind {
	case "regular":
		return "0 open " + path + " O_CREAT|O_WRONLY 0644"
	case "dir":
		return "0 mkdir " + path + " 0755"
	case "fifo":
		return "0 mkfifo " + path + " 0644"
	case "socket":
		return "0 socket " + path
	case "symlink":
		return "0 symlink nowhere " + path
	case "char":
		return "0 mknod " + path + " c 0644 1 3"
	case "block":
		return "0 mknod " + path + " b 0644 7 0"
	}
	panic("unknown kind " + kind)
}

// changes is a case that checks a call changes a time field of path:
// the value before, a pause longer than the clock's granularity, the
// call, a later value.
func changes(group, name, field, path string, setup []string, call string) testCase {
	steps := append([]string{}, setup...)
	steps = append(steps, "$before stat "+path+" "+field, "0 sleep 30", call, ">$before stat "+path+" "+field)
	return tc(group, name, steps...)
}

// sticky is the setup of the sticky-directory cases: s is 01777 (made by
// root), u made s/f and s/d.
var sticky = []string{
	"0 mkdir s 01777",
	"0 @u open s/f O_CREAT|O_WRONLY 0644",
	"0 @u mkdir s/d 0755",
}

// owned is the setup of cases about a file f of u's (group $G), mode m,
// in a directory everyone may write.
func owned(m string) []string {
	return []string{"0 chmod . 0777", "0 open f O_CREAT|O_WRONLY 0644", "0 chown f $U $G", "0 chmod f " + m}
}

func plus(setup []string, steps ...string) []string {
	return append(append([]string{}, setup...), steps...)
}

func openCases() []testCase {
	g := "open"
	var cs []testCase
	for _, m := range []string{"0000", "0400", "0600", "0644", "0755", "0777", "4755", "2755"} {
		cs = append(cs, tc(g, "creat-mode-"+m, "0 open f O_CREAT|O_WRONLY "+m, "regular stat f type", m+" stat f mode", "0 stat f size", "1 stat f nlink"))
	}
	for _, k := range kinds {
		cs = append(cs, tc(g, "excl-over-"+k, mk(k, "x"), "EEXIST open x O_CREAT|O_EXCL|O_WRONLY 0644", k+" lstat x type"))
	}
	cs = append(cs,
		tc(g, "creat-owner-is-caller", "0 chmod . 0777", "0 @u open f O_CREAT|O_WRONLY 0644", "=$U stat f uid", "=$G stat f gid"),
		tc(g, "creat-existing-keeps-mode-and-data", "0 openfd 1 f O_CREAT|O_WRONLY 0600", "0 write 1 data", "0 close 1",
			"0 open f O_CREAT|O_WRONLY 0644", "0600 stat f mode", "4 stat f size"),
		tc(g, "excl-new", "0 open f O_CREAT|O_EXCL|O_WRONLY 0640", "0640 stat f mode"),
		tc(g, "creat-through-dangling-symlink", "0 symlink target l", "0 open l O_CREAT|O_WRONLY 0644", "regular stat target type", "symlink lstat l type"),
		tc(g, "trunc", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 hello", "0 close 1", "5 stat f size",
			"0 open f O_WRONLY|O_TRUNC", "0 stat f size"),
		changes(g, "trunc-changes-mtime", "mtime", "f", []string{"0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 hello", "0 close 1"}, "0 open f O_WRONLY|O_TRUNC"),
		changes(g, "trunc-changes-ctime", "ctime", "f", []string{"0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 hello", "0 close 1"}, "0 open f O_WRONLY|O_TRUNC"),
		changes(g, "creat-changes-parent-mtime", "mtime", ".", nil, "0 open f O_CREAT|O_WRONLY 0644"),
		changes(g, "creat-changes-parent-ctime", "ctime", ".", nil, "0 open f O_CREAT|O_WRONLY 0644"),
		tc(g, "append", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 a", "0 close 1",
			"0 openfd 2 f O_WRONLY|O_APPEND", "0 write 2 b", "0 close 2", "0 openfd 3 f O_RDONLY", "6162 pread 3 10 0"),
		tc(g, "missing", "ENOENT open x O_RDONLY"),
		tc(g, "creat-in-missing-dir", "ENOENT open d/f O_CREAT|O_WRONLY 0644"),
		tc(g, "file-as-dir", mk("regular", "f"), "ENOTDIR open f/x O_RDONLY"),
		tc(g, "creat-file-as-dir", mk("regular", "f"), "ENOTDIR open f/x O_CREAT|O_WRONLY 0644"),
		tc(g, "dir-rdonly", "0 mkdir d 0755", "0 open d O_RDONLY"),
		tc(g, "dir-wronly", "0 mkdir d 0755", "EISDIR open d O_WRONLY"),
		tc(g, "dir-rdwr", "0 mkdir d 0755", "EISDIR open d O_RDWR"),
		tc(g, "dir-creat", "0 mkdir d 0755", "EISDIR open d O_CREAT|O_WRONLY 0644"),
		tc(g, "o-directory-on-file", mk("regular", "f"), "ENOTDIR open f O_RDONLY|O_DIRECTORY"),
		tc(g, "o-directory-on-dir", "0 mkdir d 0755", "0 open d O_RDONLY|O_DIRECTORY"),
		tc(g, "o-nofollow-on-symlink", mk("regular", "f"), "0 symlink f l", "ELOOP open l O_RDONLY|O_NOFOLLOW"),
		tc(g, "o-nofollow-on-file", mk("regular", "f"), "0 open f O_RDONLY|O_NOFOLLOW"),
		tc(g, "through-symlink", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 via", "0 close 1", "0 symlink f l",
			"0 openfd 2 l O_RDONLY", "766961 pread 2 10 0"),
		tc(g, "symlink-loop", "0 symlink b a", "0 symlink a b", "ELOOP open a O_RDONLY"),
		tc(g, "symlink-self-loop", "0 symlink l l", "ELOOP open l O_RDONLY", "ELOOP open l O_CREAT|O_WRONLY 0644"),
		tc(g, "fifo-read-nonblock", mk("fifo", "p"), "0 open p O_RDONLY|O_NONBLOCK"),
		tc(g, "fifo-write-nonblock-no-reader", mk("fifo", "p"), "ENXIO open p O_WRONLY|O_NONBLOCK"),
		tc(g, "fifo-writer-after-reader", mk("fifo", "p"), "0 openfd r p O_RDONLY|O_NONBLOCK", "0 open p O_WRONLY|O_NONBLOCK"),
		tc(g, "socket", mk("socket", "s"), "ENXIO open s O_RDONLY"),
		tc(g, "name-255", "0 open %255 O_CREAT|O_WRONLY 0644", "regular stat %255 type"),
		tc(g, "name-256", "ENAMETOOLONG open %256 O_CREAT|O_WRONLY 0644", "ENAMETOOLONG open %256 O_RDONLY"),
		tc(g, "other-read-denied", mk("regular", "f"), "0 chmod f 0600", "EACCES @w open f O_RDONLY"),
		tc(g, "other-read-allowed", mk("regular", "f"), "0 @w open f O_RDONLY"),
		tc(g, "other-write-denied", mk("regular", "f"), "EACCES @w open f O_WRONLY"),
		tc(g, "other-trunc-denied", mk("regular", "f"), "EACCES @w open f O_WRONLY|O_TRUNC"),
		tc(g, "other-rdwr-allowed", mk("regular", "f"), "0 chmod f 0666", "0 @w open f O_RDWR"),
		// The owner's bits are 0, the others' 7: the owner is refused.
		tc(g, "owner-bits-only", plus(owned("0077"), "EACCES @u open f O_RDONLY", "0 @v open f O_RDONLY")...),
		tc(g, "creat-in-unwritable-dir", "EACCES @u open f O_CREAT|O_WRONLY 0644"),
		tc(g, "through-unsearchable-dir", "0 mkdir d 0766", mk("regular", "d/f"), "EACCES @w open d/f O_RDONLY"),
		tc(g, "unreadable-dir", "0 mkdir d 0711", "EACCES @w open d O_RDONLY", "0 @w open d/. O_PATH"),
	)
	return cs
}

func unlinkCases() []testCase {
	g := "unlink"
	var cs []testCase
	for _, k := range kinds {
		if k == "dir" {
			continue
		}
		cs = append(cs, tc(g, k, mk(k, "x"), "0 unlink x", "ENOENT lstat x type", "empty lsl ."))
	}
	cs = append(cs,
		tc(g, "dir", "0 mkdir d 0755", "EISDIR unlink d"),
		tc(g, "missing", "ENOENT unlink x"),
		tc(g, "file-as-dir", mk("regular", "f"), "ENOTDIR unlink f/x"),
		tc(g, "trailing-slash-on-file", mk("regular", "f"), "ENOTDIR unlink f/"),
		tc(g, "name-256", "ENAMETOOLONG unlink %256"),
		tc(g, "symlink-keeps-target", mk("regular", "f"), "0 symlink f l", "0 unlink l", "regular stat f type"),
		tc(g, "one-of-two-links", mk("regular", "f"), "0 link f g", "2 stat f nlink", "0 unlink g", "1 stat f nlink", "ENOENT stat g type"),
		changes(g, "changes-ctime-of-other-link", "ctime", "f", []string{mk("regular", "f"), "0 link f g"}, "0 unlink g"),
		changes(g, "changes-parent-mtime", "mtime", ".", []string{mk("regular", "f")}, "0 unlink f"),
		changes(g, "changes-parent-ctime", "ctime", ".", []string{mk("regular", "f")}, "0 unlink f"),
		tc(g, "open-file-stays-readable", "0 openfd 1 f O_CREAT|O_RDWR 0644", "0 write 1 kept", "0 unlink f",
			"ENOENT stat f type", "0 fstat 1 nlink", "6b657074 pread 1 10 0"),
		tc(g, "unwritable-dir", "0 chmod . 0755", mk("regular", "f"), "0 chmod f 0666", "EACCES @u unlink f"),
		tc(g, "sticky-other", plus(sticky, "EPERM @w unlink s/f", "regular stat s/f type")...),
		tc(g, "sticky-owner", plus(sticky, "0 @u unlink s/f")...),
		tc(g, "sticky-dir-owner", plus(sticky, "0 chown s $V -1", "0 @v unlink s/f")...),
		tc(g, "sticky-root", plus(sticky, "0 unlink s/f")...),
	)
	return cs
}

func renameCases() []testCase {
	g := "rename"
	var cs []testCase
	for _, k := range kinds {
		cs = append(cs, tc(g, k, mk(k, "x"), "$ino lstat x ino", "0 rename x y", "ENOENT lstat x type",
			k+" lstat y type", "=$ino lstat y ino"))
	}
	for _, k := range kinds {
		if k == "dir" {
			continue
		}
		cs = append(cs, tc(g, "file-over-"+k, mk("regular", "f"), mk(k, "x"), "$ino stat f ino", "0 rename f x",
			"regular lstat x type", "=$ino lstat x ino", "ENOENT lstat f type"))
	}
	cs = append(cs,
		tc(g, "across-dirs", "0 mkdir a 0755", "0 mkdir b 0755", mk("regular", "a/f"), "0 rename a/f b/g",
			"regular stat b/g type", "ENOENT stat a/f type"),
		tc(g, "dir-across-dirs", "0 mkdir a 0755", "0 mkdir b 0755", "0 mkdir a/d 0755", "$b stat b ino",
			"0 rename a/d b/d", "=$b stat b/d/.. ino", "2 stat a nlink", "3 stat b nlink"),
		tc(g, "dir-over-empty-dir", "0 mkdir a 0755", mk("regular", "a/f"), "0 mkdir b 0755", "0 rename a b",
			"regular stat b/f type", "ENOENT stat a type"),
		tc(g, "dir-over-nonempty-dir", "0 mkdir a 0755", "0 mkdir b 0755", mk("regular", "b/f"), "ENOTEMPTY|EEXIST rename a b"),
		tc(g, "dir-over-file", "0 mkdir d 0755", mk("regular", "f"), "ENOTDIR rename d f"),
		tc(g, "file-over-dir", mk("regular", "f"), "0 mkdir d 0755", "EISDIR rename f d"),
		tc(g, "dir-into-own-subdir", "0 mkdir d 0755", "0 mkdir d/e 0755", "EINVAL rename d d/e/x"),
		tc(g, "dir-into-itself", "0 mkdir d 0755", "EINVAL rename d d/x"),
		tc(g, "missing", "ENOENT rename x y"),
		tc(g, "to-missing-dir", mk("regular", "f"), "ENOENT rename f d/g"),
		tc(g, "to-file-as-dir", mk("regular", "f"), mk("regular", "g"), "ENOTDIR rename f g/h"),
		tc(g, "to-itself", mk("regular", "f"), "0 rename f f", "regular stat f type"),
		tc(g, "hard-links-of-one-file", mk("regular", "f"), "0 link f g", "0 rename f g", "2 stat f nlink", "2 stat g nlink"),
		tc(g, "symlink-keeps-target", "0 symlink ../t l", "0 mkdir d 0755", "0 rename l d/l", "../t readlink d/l"),
		tc(g, "over-replaces-content", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 new", "0 close 1",
			"0 openfd 2 g O_CREAT|O_WRONLY 0644", "0 write 2 old", "0 close 2", "0 rename f g", "0 openfd 3 g O_RDONLY", "6e6577 pread 3 10 0"),
		tc(g, "name-256", mk("regular", "f"), "ENAMETOOLONG rename f %256", "ENAMETOOLONG rename %256 g"),
		tc(g, "dot", "0 mkdir d 0755", "EBUSY|EINVAL rename d/. x"),
		tc(g, "dotdot", "0 mkdir d 0755", "0 mkdir d/e 0755", "EBUSY|EINVAL|ENOTEMPTY rename d/e/.. x"),
		// The moved entry's ctime, read through a second link that stays.
		changes(g, "changes-ctime", "ctime", "g", []string{mk("regular", "f"), "0 link f g"}, "0 rename f h"),
		tc(g, "changes-ctime-of-moved", mk("regular", "f"), "$before stat f ctime", "0 sleep 30", "0 rename f g", ">$before stat g ctime"),
		changes(g, "changes-source-parent-mtime", "mtime", "a", []string{"0 mkdir a 0755", "0 mkdir b 0755", mk("regular", "a/f")}, "0 rename a/f b/f"),
		changes(g, "changes-target-parent-mtime", "mtime", "b", []string{"0 mkdir a 0755", "0 mkdir b 0755", mk("regular", "a/f")}, "0 rename a/f b/f"),
		changes(g, "changes-parent-ctime", "ctime", ".", []string{mk("regular", "f")}, "0 rename f g"),
		tc(g, "unwritable-dir", "0 chmod . 0755", mk("regular", "f"), "0 chown f $U $G", "EACCES @u rename f g"),
		tc(g, "sticky-other", plus(sticky, "EPERM @w rename s/f s/g")...),
		tc(g, "sticky-owner", plus(sticky, "0 @u rename s/f s/g")...),
		tc(g, "sticky-over-others-file", plus(sticky, "0 @w open s/x O_CREAT|O_WRONLY 0644", "EPERM @w rename s/x s/f")...),
	)
	return cs
}

func mkdirCases() []testCase {
	g := "mkdir"
	var cs []testCase
	for _, m := range []string{"0000", "0700", "0711", "0755", "0777", "1777"} {
		cs = append(cs, tc(g, "mode-"+m, "0 mkdir d "+m, "dir stat d type", m+" stat d mode", "2 stat d nlink"))
	}
	for _, k := range kinds {
		cs = append(cs, tc(g, "over-"+k, mk(k, "x"), "EEXIST mkdir x 0755", k+" lstat x type"))
	}
	cs = append(cs,
		tc(g, "mode-4755-drops-setuid", "0 mkdir d 04755", "0755 stat d mode"),
		tc(g, "parent-nlink", "2 stat . nlink", "0 mkdir d 0755", "3 stat . nlink", "0 mkdir e 0755", "4 stat . nlink"),
		changes(g, "changes-parent-mtime", "mtime", ".", nil, "0 mkdir d 0755"),
		changes(g, "changes-parent-ctime", "ctime", ".", nil, "0 mkdir d 0755"),
		tc(g, "missing-parent", "ENOENT mkdir a/b 0755"),
		tc(g, "file-as-parent", mk("regular", "f"), "ENOTDIR mkdir f/d 0755"),
		tc(g, "name-256", "ENAMETOOLONG mkdir %256 0755"),
		tc(g, "trailing-slash", "0 mkdir d/ 0755", "dir stat d type"),
		tc(g, "dot", "EEXIST mkdir . 0755"),
		tc(g, "owner-is-caller", "0 chmod . 0777", "0 @u mkdir d 0755", "=$U stat d uid", "=$G stat d gid"),
		tc(g, "unwritable-parent", "EACCES @u mkdir d 0755"),
		tc(g, "setgid-parent", "0 mkdir p 0777", "0 chown p -1 $G2", "0 chmod p 02777", "0 @u mkdir p/d 0755",
			"=$G2 stat p/d gid", "2755 stat p/d mode"),
		tc(g, "setgid-parent-file", "0 mkdir p 0777", "0 chown p -1 $G2", "0 chmod p 02777",
			"0 @u open p/f O_CREAT|O_WRONLY 0644", "=$G2 stat p/f gid"),
		tc(g, "umask", "0000 umask 022", "0 mkdir d 0777", "0755 stat d mode"),
	)
	return cs
}

func rmdirCases() []testCase {
	g := "rmdir"
	return []testCase{
		tc(g, "empty", "0 mkdir d 0755", "0 rmdir d", "ENOENT stat d type", "empty lsl ."),
		tc(g, "parent-nlink", "0 mkdir d 0755", "3 stat . nlink", "0 rmdir d", "2 stat . nlink"),
		changes(g, "changes-parent-mtime", "mtime", ".", []string{"0 mkdir d 0755"}, "0 rmdir d"),
		changes(g, "changes-parent-ctime", "ctime", ".", []string{"0 mkdir d 0755"}, "0 rmdir d"),
		tc(g, "with-file", "0 mkdir d 0755", mk("regular", "d/f"), "ENOTEMPTY|EEXIST rmdir d"),
		tc(g, "with-dir", "0 mkdir d 0755", "0 mkdir d/e 0755", "ENOTEMPTY|EEXIST rmdir d"),
		tc(g, "with-symlink", "0 mkdir d 0755", "0 symlink nowhere d/l", "ENOTEMPTY|EEXIST rmdir d"),
		tc(g, "with-fifo", "0 mkdir d 0755", mk("fifo", "d/p"), "ENOTEMPTY|EEXIST rmdir d"),
		tc(g, "file", mk("regular", "f"), "ENOTDIR rmdir f"),
		tc(g, "symlink-to-dir", "0 mkdir d 0755", "0 symlink d l", "ENOTDIR rmdir l", "dir stat d type"),
		tc(g, "missing", "ENOENT rmdir d"),
		tc(g, "dot", "EINVAL rmdir ."),
		tc(g, "dot-inside", "0 mkdir d 0755", "EINVAL rmdir d/."),
		tc(g, "dotdot", "0 mkdir d 0755", "ENOTEMPTY|EEXIST rmdir d/.."),
		tc(g, "name-256", "ENAMETOOLONG rmdir %256"),
		tc(g, "unwritable-parent", "0 chmod . 0755", "0 mkdir d 0777", "EACCES @u rmdir d"),
		tc(g, "sticky-other", plus(sticky, "EPERM @w rmdir s/d")...),
		tc(g, "sticky-owner", plus(sticky, "0 @u rmdir s/d")...),
	}
}

func linkCases() []testCase {
	g := "link"
	var cs []testCase
	for _, k := range kinds {
		if k == "dir" {
			cs = append(cs, tc(g, k, mk(k, "x"), "EPERM link x y"))
			continue
		}
		cs = append(cs, tc(g, k, mk(k, "x"), "$ino lstat x ino", "0 link x y", k+" lstat y type",
			"=$ino lstat y ino", "2 lstat x nlink", "2 lstat y nlink"))
	}
	for _, k := range []string{"regular", "dir", "symlink", "fifo"} {
		cs = append(cs, tc(g, "over-"+k, mk("regular", "f"), mk(k, "x"), "EEXIST link f x"))
	}
	cs = append(cs,
		tc(g, "shares-content", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 link f g", "0 write 1 both", "0 close 1",
			"0 openfd 2 g O_RDONLY", "626f7468 pread 2 10 0"),
		tc(g, "shares-mode", mk("regular", "f"), "0 link f g", "0 chmod f 0600", "0600 stat g mode"),
		tc(g, "unlink-keeps-other", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 write 1 kept", "0 close 1",
			"0 link f g", "0 unlink f", "1 stat g nlink", "0 openfd 2 g O_RDONLY", "6b657074 pread 2 10 0"),
		tc(g, "across-dirs", "0 mkdir a 0755", "0 mkdir b 0755", mk("regular", "a/f"), "$ino stat a/f ino",
			"0 link a/f b/g", "=$ino stat b/g ino"),
		tc(g, "three-names", mk("regular", "f"), "0 link f g", "0 link g h", "3 stat f nlink", "0 unlink g", "2 stat h nlink"),
		tc(g, "to-itself", mk("regular", "f"), "EEXIST link f f"),
		tc(g, "missing", "ENOENT link x y"),
		tc(g, "to-missing-dir", mk("regular", "f"), "ENOENT link f d/g"),
		tc(g, "file-as-dir", mk("regular", "f"), "ENOTDIR link f/x y", "ENOTDIR link f f/y"),
		tc(g, "name-256", mk("regular", "f"), "ENAMETOOLONG link f %256"),
		changes(g, "changes-ctime", "ctime", "f", []string{mk("regular", "f")}, "0 link f g"),
		changes(g, "changes-parent-mtime", "mtime", ".", []string{mk("regular", "f")}, "0 link f g"),
		tc(g, "unwritable-dir", "0 chmod . 0755", mk("regular", "f"), "0 chmod f 0666", "EACCES @u link f g"),
	)
	return cs
}

func symlinkCases() []testCase {
	g := "symlink"
	var cs []testCase
	for _, k := range kinds {
		cs = append(cs, tc(g, "over-"+k, mk(k, "x"), "EEXIST symlink t x", k+" lstat x type"))
	}
	for _, n := range []int{1, 255, 1000, 4095} {
		t := fmt.Sprintf("%%%dt", n)
		cs = append(cs, tc(g, fmt.Sprintf("target-%d-bytes", n), "0 symlink "+t+" l", t+" readlink l", fmt.Sprintf("%d lstat l size", n)))
	}
	cs = append(cs,
		tc(g, "create", mk("regular", "f"), "0 symlink f l", "symlink lstat l type", "f readlink l", "1 lstat l size",
			"regular stat l type", "0777 lstat l mode"),
		tc(g, "dangling", "0 symlink nowhere l", "symlink lstat l type", "ENOENT stat l type", "nowhere readlink l"),
		tc(g, "relative-target", "0 mkdir d 0755", "0 symlink ../x/./y d/l", "../x/./y readlink d/l"),
		tc(g, "absolute-target", "0 symlink /nowhere/at/all l", "/nowhere/at/all readlink l"),
		tc(g, "odd-bytes", "0 symlink a:b*c?é l", "a:b*c?é readlink l"),
		tc(g, "target-4096", "ENAMETOOLONG symlink %4096 l"),
		tc(g, "empty-target", "ENOENT symlink '' l"),
		tc(g, "to-dir", "0 mkdir d 0755", mk("regular", "d/f"), "0 symlink d l", "regular stat l/f type", "dir stat l type"),
		tc(g, "listed-as-link", mk("regular", "f"), "0 symlink f l", "0 symlink nowhere m", "f:f,l:l,m:l lsl ."),
		tc(g, "loop", "0 symlink b a", "0 symlink a b", "ELOOP stat a type", "symlink lstat a type"),
		tc(g, "chain-8", "0 mkdir d 0755", "0 symlink d l1", "0 symlink l1 l2", "0 symlink l2 l3", "0 symlink l3 l4",
			"0 symlink l4 l5", "0 symlink l5 l6", "0 symlink l6 l7", "0 symlink l7 l8", "dir stat l8 type"),
		tc(g, "through-file", mk("regular", "f"), "0 symlink f l", "ENOTDIR stat l/x type"),
		tc(g, "readlink-file", mk("regular", "f"), "EINVAL readlink f"),
		tc(g, "readlink-dir", "0 mkdir d 0755", "EINVAL readlink d"),
		tc(g, "readlink-missing", "ENOENT readlink x"),
		tc(g, "name-256", "ENAMETOOLONG symlink t %256"),
		tc(g, "missing-dir", "ENOENT symlink t d/l"),
		tc(g, "owner-is-caller", "0 chmod . 0777", "0 @u symlink t l", "=$U lstat l uid"),
		tc(g, "unwritable-dir", "EACCES @u symlink t l"),
		changes(g, "changes-parent-mtime", "mtime", ".", nil, "0 symlink t l"),
	)
	return cs
}

func truncateCases() []testCase {
	g := "truncate"
	abc := []string{"0 openfd 1 f O_CREAT|O_RDWR 0644", "0 write 1 abc"}
	return []testCase{
		tc(g, "grow", plus(abc, "0 truncate f 6", "6 stat f size", "616263000000 pread 1 10 0")...),
		tc(g, "shrink", plus(abc, "0 truncate f 1", "1 stat f size", "61 pread 1 10 0")...),
		tc(g, "to-zero", plus(abc, "0 truncate f 0", "0 stat f size", "empty pread 1 10 0")...),
		tc(g, "sparse-1g", mk("regular", "f"), "0 truncate f 1073741824", "1073741824 stat f size"),
		changes(g, "changes-mtime", "mtime", "f", abc, "0 truncate f 1"),
		changes(g, "changes-ctime", "ctime", "f", abc, "0 truncate f 1"),
		tc(g, "negative", mk("regular", "f"), "EINVAL truncate f -1"),
		tc(g, "dir", "0 mkdir d 0755", "EISDIR truncate d 0"),
		tc(g, "missing", "ENOENT truncate f 0"),
		tc(g, "file-as-dir", mk("regular", "f"), "ENOTDIR truncate f/x 0"),
		tc(g, "through-symlink", plus(abc, "0 symlink f l", "0 truncate l 2", "2 stat f size")...),
		tc(g, "other-denied", mk("regular", "f"), "EACCES @w truncate f 0"),
		tc(g, "other-allowed", mk("regular", "f"), "0 chmod f 0666", "0 @w truncate f 5", "5 stat f size"),
		tc(g, "ftruncate", plus(abc, "0 ftruncate 1 2", "2 fstat 1 size", "2 stat f size")...),
		tc(g, "ftruncate-grow", plus(abc, "0 ftruncate 1 5", "6162630000 pread 1 10 0")...),
		tc(g, "ftruncate-rdonly", mk("regular", "f"), "0 openfd 1 f O_RDONLY", "EINVAL|EBADF ftruncate 1 0"),
		tc(g, "ftruncate-negative", plus(abc, "EINVAL ftruncate 1 -1")...),
		changes(g, "ftruncate-changes-mtime", "mtime", "f", abc, "0 ftruncate 1 1"),
		tc(g, "ftruncate-by-other-with-open-fd", mk("regular", "f"), "0 chmod f 0666", "0 @w openfd 1 f O_WRONLY",
			"0 chmod f 0600", "0 @w ftruncate 1 3", "3 stat f size"),
	}
}

func utimeCases() []testCase {
	g := "utimensat"
	const a, m = "1500000000123456789", "1600000000987654321"
	return []testCase{
		tc(g, "both", mk("regular", "f"), "0 utimensat f "+a+" "+m, a+" stat f atime", m+" stat f mtime"),
		tc(g, "dir", "0 mkdir d 0755", "0 utimensat d "+a+" "+m, a+" stat d atime", m+" stat d mtime"),
		tc(g, "omit-atime", mk("regular", "f"), "0 utimensat f "+a+" "+a, "0 utimensat f omit "+m, a+" stat f atime", m+" stat f mtime"),
		tc(g, "omit-mtime", mk("regular", "f"), "0 utimensat f "+m+" "+m, "0 utimensat f "+a+" omit", a+" stat f atime", m+" stat f mtime"),
		tc(g, "omit-both-changes-nothing", mk("regular", "f"), "0 utimensat f "+a+" "+m, "$c stat f ctime", "0 sleep 30",
			"0 utimensat f omit omit", "=$c stat f ctime", a+" stat f atime"),
		tc(g, "now", mk("regular", "f"), "0 utimensat f "+a+" "+m, "$t0 now", "0 sleep 30", "0 utimensat f now now",
			"$t1 now", ">$t0 stat f mtime", "<=$t1 stat f mtime", ">$t0 stat f atime"),
		tc(g, "now-mtime-omit-atime", mk("regular", "f"), "0 utimensat f "+a+" "+m, "0 utimensat f omit now",
			a+" stat f atime", ">"+m+" stat f mtime"),
		changes(g, "changes-ctime", "ctime", "f", []string{mk("regular", "f")}, "0 utimensat f "+a+" "+m),
		tc(g, "future-mtime-ctime-is-now", mk("regular", "f"), "0 utimensat f omit 4102444800000000000", "$t now",
			"4102444800000000000 stat f mtime", "<=$t stat f ctime"),
		tc(g, "before-1970", mk("regular", "f"), "0 utimensat f -1000000000 -86400000000000", "-1000000000 stat f atime",
			"-86400000000000 stat f mtime"),
		tc(g, "symlink-nofollow", mk("regular", "f"), "0 utimensat f "+a+" "+a, "0 symlink f l",
			"0 utimensat l "+m+" "+m+" nofollow", m+" lstat l mtime", a+" stat f mtime"),
		tc(g, "symlink-follow", mk("regular", "f"), "0 symlink f l", "0 utimensat l "+a+" "+m, m+" stat f mtime"),
		tc(g, "futimens", mk("regular", "f"), "0 openfd 1 f O_RDONLY", "0 futimens 1 "+a+" "+m, m+" stat f mtime", a+" stat f atime"),
		tc(g, "missing", "ENOENT utimensat f now now"),
		tc(g, "other-explicit", mk("regular", "f"), "0 chmod f 0666", "EPERM @w utimensat f "+a+" "+m),
		tc(g, "other-now-without-write", mk("regular", "f"), "EACCES @w utimensat f now now"),
		tc(g, "other-now-with-write", mk("regular", "f"), "0 chmod f 0666", "0 @w utimensat f now now"),
		tc(g, "owner-explicit", plus(owned("0444"), "0 @u utimensat f "+a+" "+m, m+" stat f mtime")...),
		tc(g, "write-changes-mtime", "0 openfd 1 f O_CREAT|O_WRONLY 0644", "0 utimensat f "+a+" "+m, "0 write 1 x",
			">"+m+" stat f mtime"),
		changes(g, "write-changes-ctime", "ctime", "f", []string{"0 openfd 1 f O_CREAT|O_WRONLY 0644"}, "0 write 1 x"),
	}
}

func chmodCases() []testCase {
	g := "chmod"
	var cs []testCase
	for _, m := range []string{"0000", "0644", "0755", "0777", "1755", "4755", "2755", "6755", "7777"} {
		cs = append(cs, tc(g, "file-"+m, mk("regular", "f"), "0 chmod f "+m, m+" stat f mode"))
	}
	for _, m := range []string{"0000", "0700", "1777", "2755"} {
		cs = append(cs, tc(g, "dir-"+m, "0 mkdir d 0755", "0 chmod d "+m, m+" stat d mode"))
	}
	cs = append(cs,
		tc(g, "fifo", mk("fifo", "p"), "0 chmod p 0600", "0600 stat p mode", "fifo stat p type"),
		tc(g, "socket", mk("socket", "s"), "0 chmod s 0600", "0600 stat s mode"),
		tc(g, "char", mk("char", "c"), "0 chmod c 0600", "0600 stat c mode"),
		tc(g, "through-symlink", mk("regular", "f"), "0 symlink f l", "0 chmod l 0600", "0600 stat f mode", "0777 lstat l mode"),
		changes(g, "changes-ctime", "ctime", "f", []string{mk("regular", "f")}, "0 chmod f 0600"),
		tc(g, "keeps-mtime", mk("regular", "f"), "0 utimensat f 1500000000 1500000000", "0 chmod f 0600", "1500000000 stat f mtime"),
		tc(g, "missing", "ENOENT chmod f 0644"),
		tc(g, "file-as-dir", mk("regular", "f"), "ENOTDIR chmod f/x 0644"),
		tc(g, "name-256", "ENAMETOOLONG chmod %256 0644"),
		tc(g, "by-other", mk("regular", "f"), "0 chmod f 0666", "EPERM @w chmod f 0777", "0666 stat f mode"),
		tc(g, "by-owner", plus(owned("0644"), "0 @u chmod f 0600", "0600 stat f mode")...),
		tc(g, "owner-setuid", plus(owned("0755"), "0 @u chmod f 04755", "4755 stat f mode")...),
		tc(g, "owner-setgid-own-group", plus(owned("0755"), "0 @u chmod f 02755", "2755 stat f mode")...),
		tc(g, "owner-setgid-other-group", plus(owned("0755"), "0 chown f -1 $G3", "0 @u chmod f 02755", "0755 stat f mode")...),
		tc(g, "fchmod", mk("regular", "f"), "0 openfd 1 f O_RDONLY", "0 fchmod 1 0640", "0640 stat f mode", "0640 fstat 1 mode"),
		tc(g, "fchmod-dir", "0 mkdir d 0755", "0 openfd 1 d O_RDONLY", "0 fchmod 1 0700", "0700 stat d mode"),
		tc(g, "write-by-other-clears-setuid", mk("regular", "f"), "0 chmod f 04777", "0 @w openfd 1 f O_WRONLY",
			"0 @w write 1 x", "0777 stat f mode"),
		tc(g, "setuid-by-other-denied", mk("regular", "f"), "0 chmod f 0777", "EPERM @w chmod f 04777"),
	)
	return cs
}

func chownCases() []testCase {
	g := "chown"
	var cs []testCase
	for _, k := range []string{"regular", "dir", "fifo", "socket", "char"} {
		cs = append(cs, tc(g, k, mk(k, "x"), "0 chown x $U $G", "=$U stat x uid", "=$G stat x gid"))
	}
	cs = append(cs,
		tc(g, "uid-only", mk("regular", "f"), "0 chown f $U -1", "=$U stat f uid", "0 stat f gid"),
		tc(g, "gid-only", mk("regular", "f"), "0 chown f -1 $G", "0 stat f uid", "=$G stat f gid"),
		tc(g, "no-change", mk("regular", "f"), "0 chown f -1 -1", "0 stat f uid"),
		changes(g, "changes-ctime", "ctime", "f", []string{mk("regular", "f")}, "0 chown f $U $G"),
		tc(g, "clears-setuid", mk("regular", "f"), "0 chmod f 06755", "0 chown f $U $G", "0755 stat f mode"),
		tc(g, "dir-keeps-setgid", "0 mkdir d 0755", "0 chmod d 02755", "0 chown d $U $G", "2755 stat d mode"),
		tc(g, "through-symlink", mk("regular", "f"), "0 symlink f l", "0 chown l $U $G", "=$U stat f uid", "0 lstat l uid"),
		tc(g, "lchown", mk("regular", "f"), "0 symlink f l", "0 lchown l $U $G", "=$U lstat l uid", "0 stat f uid"),
		tc(g, "lchown-dangling", "0 symlink nowhere l", "0 lchown l $U $G", "=$U lstat l uid", "=$G lstat l gid"),
		tc(g, "fchown", mk("regular", "f"), "0 openfd 1 f O_RDONLY", "0 fchown 1 $U $G", "=$U stat f uid"),
		tc(g, "missing", "ENOENT chown f 0 0"),
		tc(g, "by-other", mk("regular", "f"), "EPERM @w chown f $W -1"),
		tc(g, "owner-gives-away", plus(owned("0644"), "EPERM @u chown f $V -1")...),
		tc(g, "owner-to-own-group", plus(owned("0644"), "0 @u chown f -1 $G2", "=$G2 stat f gid")...),
		tc(g, "owner-to-foreign-group", plus(owned("0644"), "EPERM @u chown f -1 $G3")...),
		tc(g, "owner-to-self", plus(owned("0644"), "0 @u chown f $U -1")...),
		tc(g, "owner-chgrp-clears-setuid", plus(owned("06755"), "0 @u chown f -1 $G2", "0755 stat f mode")...),
	)
	return cs
}

func mknodCases() []testCase {
	g := "mknod"
	var cs []testCase
	for _, m := range []string{"0600", "0644", "0777"} {
		cs = append(cs, tc(g, "mkfifo-"+m, "0 mkfifo p "+m, "fifo stat p type", m+" stat p mode", "1 stat p nlink"))
	}
	for _, k := range kinds {
		cs = append(cs, tc(g, "mkfifo-over-"+k, mk(k, "x"), "EEXIST mkfifo x 0644"))
	}
	cs = append(cs,
		tc(g, "mkfifo-missing-dir", "ENOENT mkfifo d/p 0644"),
		tc(g, "mkfifo-file-as-dir", mk("regular", "f"), "ENOTDIR mkfifo f/p 0644"),
		tc(g, "mkfifo-name-256", "ENAMETOOLONG mkfifo %256 0644"),
		tc(g, "mkfifo-owner-is-caller", "0 chmod . 0777", "0 @u mkfifo p 0644", "=$U stat p uid"),
		tc(g, "mkfifo-unwritable-dir", "EACCES @u mkfifo p 0644"),
		changes(g, "mkfifo-changes-parent-mtime", "mtime", ".", nil, "0 mkfifo p 0644"),
		tc(g, "fifo", "0 mknod p p 0640", "fifo stat p type", "0640 stat p mode"),
		tc(g, "socket", "0 mknod s s 0640", "socket stat s type", "0640 stat s mode"),
		tc(g, "regular", "0 mknod f f 0640", "regular stat f type", "0 stat f size"),
		tc(g, "char", "0 mknod c c 0640 1 3", "char stat c type", "1,3 stat c rdev", "0640 stat c mode"),
		tc(g, "block", "0 mknod b b 0640 7 0", "block stat b type", "7,0 stat b rdev"),
		tc(g, "char-by-user", "0 chmod . 0777", "EPERM @u mknod c c 0640 1 3"),
		tc(g, "over-file", mk("regular", "f"), "EEXIST mknod f p 0644"),
		tc(g, "bound-socket", "0 socket s", "socket stat s type", "s:s lsl ."),
		tc(g, "listed", mk("fifo", "p"), mk("socket", "s"), mk("char", "c"), mk("block", "b"), "b:b,c:c,p:p,s:s lsl ."),
	)
	return cs
}

func accessCases() []testCase {
	g := "access"
	var cs []testCase
	// For each class of user (u the owner, v of the group, w another) and
	// each right: a mode giving the class just that right grants it; a
	// mode giving every other bit refuses it (only the caller's own class
	// counts).
	classes := []struct {
		user  string
		shift uint
	}{{"u", 6}, {"v", 3}, {"w", 0}}
	rights := []struct {
		name string
		bit  uint
	}{{"R_OK", 4}, {"W_OK", 2}, {"X_OK", 1}}
	for _, c := range classes {
		for _, r := range rights {
			grant := fmt.Sprintf("%04o", r.bit<<c.shift)
			deny := fmt.Sprintf("%04o", 0o777&^(r.bit<<c.shift))
			cs = append(cs,
				tc(g, fmt.Sprintf("%s-%s-granted", c.user, r.name), plus(owned(grant), "0 @"+c.user+" access f "+r.name)...),
				tc(g, fmt.Sprintf("%s-%s-refused", c.user, r.name), plus(owned(deny), "EACCES @"+c.user+" access f "+r.name)...),
			)
		}
	}
	cs = append(cs,
		tc(g, "root-read-0000", mk("regular", "f"), "0 chmod f 0000", "0 access f R_OK|W_OK"),
		tc(g, "root-exec-0000", mk("regular", "f"), "0 chmod f 0000", "EACCES access f X_OK"),
		tc(g, "root-exec-0100", mk("regular", "f"), "0 chmod f 0100", "0 access f X_OK"),
		tc(g, "root-search-dir-0000", "0 mkdir d 0000", "0 access d X_OK"),
		tc(g, "missing", "ENOENT access f F_OK"),
		tc(g, "exists", mk("regular", "f"), "0 access f F_OK", "0 @w access f F_OK"),
		tc(g, "supplementary-group", mk("regular", "f"), "0 chown f -1 $G2", "0 chmod f 0040", "0 @u access f R_OK"),
		tc(g, "unsearchable-dir", "0 mkdir d 0766", mk("regular", "d/f"), "EACCES @w access d/f F_OK", "EACCES @w stat d/f type"),
		tc(g, "search-only-dir", "0 mkdir d 0711", mk("regular", "d/f"), "regular @w stat d/f type", "EACCES @w readdir d"),
		tc(g, "readable-dir", "0 mkdir d 0755", mk("regular", "d/f"), ".,..,f @w readdir d"),
		tc(g, "other-writable-dir", "0 mkdir d 0757", "0 @w open d/f O_CREAT|O_WRONLY 0644", "=$W stat d/f uid"),
		tc(g, "other-unwritable-dir", "0 mkdir d 0775", "EACCES @w open d/f O_CREAT|O_WRONLY 0644"),
		tc(g, "group-writable-dir", "0 mkdir d 0770", "0 chown d -1 $G", "0 @v mkdir d/e 0755", "EACCES @w mkdir d/x 0755"),
		tc(g, "owner-read-open", plus(owned("0400"), "0 @u open f O_RDONLY", "EACCES @u open f O_WRONLY")...),
		tc(g, "group-write-open", plus(owned("0020"), "0 @v open f O_WRONLY", "EACCES @v open f O_RDONLY", "EACCES @u open f O_WRONLY")...),
		tc(g, "other-exec-dir-chain", "0 mkdir a 0711", "0 mkdir a/b 0711", "0 mkdir a/b/c 0755", mk("regular", "a/b/c/f"), "0 @w open a/b/c/f O_RDONLY"),
	)
	return cs
}

// nameCases are about names and path lengths: NAME_MAX (255 bytes) for an
// element, PATH_MAX (4096 bytes) for one argument, and no limit on depth.
func nameCases() []testCase {
	g := "names"
	deep := []string{}
	for i := 0; i < 20; i++ { // 20 x 251 bytes: deeper than PATH_MAX
		deep = append(deep, "0 mkdir %250a 0755", "0 chdir %250a")
	}
	long := "%250a"
	for i := 0; i < 16; i++ {
		long += "/%250a"
	}
	cs := []testCase{
		tc(g, "deep-tree", plus(deep, "0 openfd 1 f O_CREAT|O_RDWR 0644", "0 write 1 deep", "4 stat f size",
			"0 mkdir d 0755", "0 rename f d/g", "regular stat d/g type", "6465 pread 1 2 0", "d:d lsl .",
		)...),
		tc(g, "deep-tree-ops", plus(deep, mk("regular", "f"), "0 link f g", "0 symlink f l", "f readlink l", "0 chmod f 0600",
			"0 utimensat f 1000000000 1000000000", "1000000000 stat g mtime", "0 unlink g", "0 unlink l", "0 unlink f", "empty lsl .")...),
		tc(g, "path-over-path-max", "ENAMETOOLONG stat "+long+" type", "ENAMETOOLONG open "+long+" O_CREAT|O_WRONLY 0644"),
		tc(g, "odd-bytes", "0 open a:b*c?é\\ O_CREAT|O_WRONLY 0644", "regular stat a:b*c?é\\ type", "a:b*c?é\\:f lsl ."),
		tc(g, "dots", "0 open ... O_CREAT|O_WRONLY 0644", "0 mkdir .hidden 0755", "...:f,.hidden:d lsl ."),
		tc(g, "utf8", "0 mkdir été 0755", "0 open été/日本 O_CREAT|O_WRONLY 0644", "regular stat été/日本 type"),
	}
	for _, c := range []struct{ name, step string }{
		{"open", "open %256 O_CREAT|O_WRONLY 0644"}, {"mkdir", "mkdir %256 0755"}, {"mkfifo", "mkfifo %256 0644"},
		{"symlink", "symlink t %256"}, {"stat", "stat %256 type"}, {"lstat", "lstat %256 type"},
		{"rename-from", "rename %256 x"}, {"truncate", "truncate %256 0"}, {"chmod", "chmod %256 0644"},
		{"access", "access %256 F_OK"}, {"readlink", "readlink %256"}, {"element-in-path", "stat d/%256/x type"},
	} {
		cs = append(cs, tc(g, "256-"+c.name, "0 mkdir d 0755", "ENAMETOOLONG "+c.step))
	}
	for _, c := range []struct{ name, make, check string }{
		{"file", "open %255 O_CREAT|O_WRONLY 0644", "regular lstat %255 type"},
		{"dir", "mkdir %255 0755", "dir lstat %255 type"},
		{"fifo", "mkfifo %255 0644", "fifo lstat %255 type"},
		{"symlink", "symlink t %255", "symlink lstat %255 type"},
	} {
		cs = append(cs, tc(g, "255-"+c.name, "0 "+c.make, c.check))
	}
	return cs
}

// dirCases are about directories as such: listings with . and .., link
// counts, the inode numbers of . and ...
func dirCases() []testCase {
	g := "dir"
	return []testCase{
		tc(g, "empty-listing", "0 mkdir d 0755", ".,.. readdir d"),
		tc(g, "listing", "0 mkdir d 0755", mk("regular", "d/f"), "0 mkdir d/e 0755", ".,..,e,f readdir d"),
		tc(g, "listing-types", mk("regular", "f"), "0 mkdir d 0755", "0 symlink f l", mk("fifo", "p"), mk("socket", "s"), "d:d,f:f,l:l,p:p,s:s lsl ."),
		tc(g, "nlink-subdirs", "0 mkdir d 0755", "0 mkdir d/a 0755", "0 mkdir d/b 0755", mk("regular", "d/f"), "4 stat d nlink",
			"0 rmdir d/a", "3 stat d nlink"),
		tc(g, "nlink-files-do-not-count", "0 mkdir d 0755", mk("regular", "d/f"), "0 symlink f d/l", "2 stat d nlink"),
		tc(g, "dot-ino", "0 mkdir d 0755", "$i stat d ino", "=$i stat d/. ino"),
		tc(g, "dotdot-ino", "0 mkdir d 0755", "0 mkdir d/e 0755", "$i stat d ino", "=$i stat d/e/.. ino"),
		tc(g, "ino-stable", mk("regular", "f"), "$i stat f ino", "0 chmod f 0600", "=$i stat f ino", "0 truncate f 5", "=$i stat f ino"),
		tc(g, "ino-distinct", mk("regular", "f"), mk("regular", "g"), "$i stat f ino", "!=$i stat g ino"),
		tc(g, "new-file-nlink", mk("regular", "f"), "1 stat f nlink"),
		tc(g, "chdir-dotdot", "0 mkdir d 0755", "0 chdir d", "0 mkdir ../e 0755", "dir stat ../e type"),
		tc(g, "chdir-file", mk("regular", "f"), "ENOTDIR chdir f"),
		tc(g, "chdir-unsearchable", "0 mkdir d 0700", "EACCES @w chdir d"),
	}
}
