package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/export/jail"
)

// TestExportIdentity: an export keeps its identity across servers (a
// restart), a new export gets another, an identity file made where the
// filesystem has no extended attributes is honoured and hidden from
// clients, and a client that asks for attribute words is told it.
func TestExportIdentity(t *testing.T) {
	export := t.TempDir()
	s1, addr := testServe(t, Options{Export: export})
	s2, _ := testServe(t, Options{Export: export})
	if !validID(s1.ID()) || s1.ID() != s2.ID() {
		t.Fatalf("identities %q and %q of one export", s1.ID(), s2.ID())
	}
	other, _ := testServe(t, Options{Export: t.TempDir()})
	if other.ID() == s1.ID() {
		t.Fatal("two exports share an identity")
	}
	c := testConnect(t, addr)
	c.send("FEATURES\n")
	if got := c.line(); strings.Contains(got, "id=") {
		t.Errorf("identity told without attribute words: %q", got)
	}
	c.send("FEATURES attrs\n")
	if got := c.line(); !strings.HasSuffix(got, " id="+s1.ID()) {
		t.Errorf("FEATURES attrs: %q, want it to end in id=%s", got, s1.ID())
	}

	// Kept in a file where there are no extended attributes.
	fileExport := t.TempDir()
	const id = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(fileExport, jail.IDFile), []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, addr3 := testServe(t, Options{Export: fileExport})
	if s3.ID() != id {
		t.Errorf("identity %q, want the file's %q", s3.ID(), id)
	}
	c3 := testConnect(t, addr3)
	if es := c3.list(""); len(es) != 0 {
		t.Errorf("LIST shows %v", entryNames(es))
	}
	c3.send("GET " + jail.IDFile + "\n")
	c3.expectPrefix("GET FAIL invalid")
}

// writeIDFile, the fallback where extended attributes are missing, never
// replaces an identity file made meanwhile and leaves no temporary file.
func TestWriteIDFile(t *testing.T) {
	dir := t.TempDir()
	j, err := jail.Open(dir, jail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const a, b = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	if err := writeIDFile(j, a); err != nil {
		t.Fatal(err)
	}
	if err := writeIDFile(j, b); err == nil {
		t.Error("a second identity replaced the first")
	}
	got, err := os.ReadFile(filepath.Join(dir, jail.IDFile))
	if err != nil || strings.TrimSpace(string(got)) != a {
		t.Errorf("identity file %q %v", got, err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
