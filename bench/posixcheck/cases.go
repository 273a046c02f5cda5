package main

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
