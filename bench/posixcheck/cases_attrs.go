package main

// The cases about what a file is: size, times, mode, owner, type, who
// may use it; and about names and directories as such.

import "fmt"

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
