package peer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportIdentity: an export keeps its identity across servers (a
// restart), a new export gets another, an identity file made where the
// filesystem has no extended attributes is honoured and hidden from
// clients, and a client that asks for attribute words is told it.
func TestExportIdentity(t *testing.T) {
	export := t.TempDir()
	s1, addr := srvTestServe(t, ServerOptions{Export: export})
	s2, _ := srvTestServe(t, ServerOptions{Export: export})
	if !validID(s1.ID()) || s1.ID() != s2.ID() {
		t.Fatalf("identities %q and %q of one export", s1.ID(), s2.ID())
	}
	other, _ := srvTestServe(t, ServerOptions{Export: t.TempDir()})
	if other.ID() == s1.ID() {
		t.Fatal("two exports share an identity")
	}
	c := srvTestConnect(t, addr)
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
	if err := os.WriteFile(filepath.Join(fileExport, exportIDFile), []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, addr3 := srvTestServe(t, ServerOptions{Export: fileExport})
	if s3.ID() != id {
		t.Errorf("identity %q, want the file's %q", s3.ID(), id)
	}
	c3 := srvTestConnect(t, addr3)
	if es := c3.list(""); len(es) != 0 {
		t.Errorf("LIST shows %v", srvNames(es))
	}
	c3.send("GET " + exportIDFile + "\n")
	c3.expectPrefix("GET FAIL invalid")
}

// writeIDFile, the fallback where extended attributes are missing, never
// replaces an identity file made meanwhile and leaves no temporary file.
func TestWriteIDFile(t *testing.T) {
	dir := t.TempDir()
	j, err := jailOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	const a, b = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	if err := writeIDFile(j, a); err != nil {
		t.Fatal(err)
	}
	if err := writeIDFile(j, b); err == nil {
		t.Error("a second identity replaced the first")
	}
	got, err := os.ReadFile(filepath.Join(dir, exportIDFile))
	if err != nil || strings.TrimSpace(string(got)) != a {
		t.Errorf("identity file %q %v", got, err)
	}
	if left := srvTemps(t, dir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
