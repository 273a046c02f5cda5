package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestListingKeepsFreshAttributes: a listing (READDIRPLUS) hands the
// kernel each entry's attributes, so it must never carry older ones than
// the kernel has: right after a chmod or a write through this mount, and
// while a directory's chmod may still be on its way to the peer (written
// behind), `ls -l` of the parent and a stat show the new mode and size.
func TestListingKeepsFreshAttributes(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	var script strings.Builder
	script.WriteString("set -e\ncd \"$1\"\n")
	for i := range 20 {
		fmt.Fprintf(&script, "mkdir d%d; chmod 700 d%d; printf abc > f%d; chmod 600 f%d\n", i, i, i, i)
		fmt.Fprintf(&script, "ls -l > /dev/null; stat -c '%%n %%a %%s' d%d f%d\n", i, i)
	}
	out := mustRun(t, "", "sh", "-c", script.String(), "sh", a.dir(b))
	for i := range 20 {
		for _, want := range []string{fmt.Sprintf("d%d 700 ", i), fmt.Sprintf("f%d 600 3", i)} {
			if !strings.Contains(out, want) {
				t.Errorf("after chmod and ls -l, stat lacks %q:\n%s", want, out)
			}
		}
	}
	// And the listing itself, once the kernel has forgotten what it held:
	// what ls -l shows then comes from the READDIRPLUS answers.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Skipf("cannot drop the kernel's caches: %v", err)
	}
	ls := mustRun(t, "", "ls", "-l", a.dir(b))
	modes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(ls), "\n") {
		if f := strings.Fields(line); len(f) >= 9 {
			modes[f[len(f)-1]] = f[0]
		}
	}
	for i := range 20 {
		if d, f := modes[fmt.Sprintf("d%d", i)], modes[fmt.Sprintf("f%d", i)]; d != "drwx------" || f != "-rw-------" {
			t.Errorf("ls -l shows d%d as %q and f%d as %q, want drwx------ and -rw-------:\n%s", i, d, i, f, ls)
			break
		}
	}
}
