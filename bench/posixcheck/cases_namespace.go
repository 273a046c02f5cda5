package main

// The cases about names in directories: open and creat, unlink, rename,
// mkdir, rmdir, link, symlink.

import "fmt"

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
