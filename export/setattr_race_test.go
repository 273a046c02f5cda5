package export

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSetattrMtimeRacingInPlacePut (from the tenth session's review): a
// SETATTR mtime= beside a conditional PUT of the same file from another
// connection. The file has another hard link, so the PUT writes it in
// place (overwrite). SETATTR takes the file's token before its change and
// records it after; a PUT storing new content in between had its content
// end up under the old token (two contents, one token: a writer holding
// the old content would replace the new without a conflict), or, checking
// between the new mtime and the record, was refused as a conflict though
// it named the current content. Repeated for two seconds: the race showed
// within 0.1 s before the fix.
func TestSetattrMtimeRacingInPlacePut(t *testing.T) {
	export := t.TempDir()
	_, addr := testServe(t, Options{Export: export})
	a, b := testConnectPosix(t, addr), testConnectPosix(t, addr)
	a.putVer("f", "", []byte("aaaaaaaa"))
	if err := os.Link(filepath.Join(export, "f"), filepath.Join(export, "g")); err != nil {
		t.Fatal(err)
	}
	v := verOf(t, a.roundTrip("STAT f"))
	deadline := time.Now().Add(2 * time.Second)
	for n := 1; time.Now().Before(deadline); n++ {
		data := []byte(strconv.Itoa(10000000 + n%90000000))
		var wg sync.WaitGroup
		var put string
		wg.Add(2)
		go func() { defer wg.Done(); put = a.putVer("f", "ver="+v, data) }()
		go func() {
			defer wg.Done()
			b.roundTrip("SETATTR f mtime=" + strconv.Itoa(1500000000+n) + "000000000")
		}()
		wg.Wait()
		now := verOf(t, a.roundTrip("STAT f"))
		switch {
		case !strings.HasPrefix(put, "PUT DONE"):
			t.Fatalf("round %d: a PUT on the file's token, beside a SETATTR mtime= of it, refused: %q", n, put)
		case now == v:
			t.Fatalf("round %d: PUT stored new content (%q), but after the SETATTR mtime= beside it the file has the token of the content before, %s", n, put, v)
		}
		v = now
	}
}
