package export

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/peerfs/peerfs/export/jail"
	"golang.org/x/sys/unix"
)

// An export has an identity of its own, so that a mount can tell the
// peer it wrote a file for from another one that took its name (another
// machine, another cluster): data pending for one is never delivered to
// the other. The identity is 32 random hex digits created the first time
// a server opens the export and kept with it: in the export directory's
// extended attribute exportIDXattr, or where the filesystem has none, in
// the file jail.IDFile at its top (hidden from clients, like uploads in
// progress). It moves with the export (a backup restored elsewhere is the
// same export) and is lost with it. An export that can hold neither (a
// read-only filesystem) gets one derived from its filesystem's ID and the
// directory's inode number.
const exportIDXattr = "user.peerfs.id"

// exportID returns the identity of j's export, creating it if it has
// none.
func exportID(j *jail.Jail) (string, error) {
	root := fdPath(j.FD(), "") // the export, through its O_PATH descriptor
	var buf [64]byte
	if n, err := unix.Getxattr(root, exportIDXattr, buf[:]); err == nil && validID(string(buf[:n])) {
		return string(buf[:n]), nil
	}
	if b, err := j.Root().ReadFile(jail.IDFile); err == nil && validID(strings.TrimSpace(string(b))) {
		return strings.TrimSpace(string(b)), nil
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(rnd[:])
	err := unix.Setxattr(root, exportIDXattr, []byte(id), unix.XATTR_CREATE)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, unix.EEXIST):
		// Another server made one meanwhile: use it.
		if n, err := unix.Getxattr(root, exportIDXattr, buf[:]); err == nil && validID(string(buf[:n])) {
			return string(buf[:n]), nil
		}
	}
	if err := writeIDFile(j, id); err == nil {
		return id, nil
	}
	// Neither could be written (a read-only filesystem): a stable one.
	var st unix.Statfs_t
	var rst unix.Stat_t
	if err := unix.Fstatfs(j.FD(), &st); err != nil {
		return "", err
	}
	if err := unix.Fstat(j.FD(), &rst); err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte("peerfs export\x00"))
	_ = binary.Write(h, binary.LittleEndian, st.Fsid)
	_ = binary.Write(h, binary.LittleEndian, rst.Ino)
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// writeIDFile stores id as jail.IDFile, atomically, unless it exists.
func writeIDFile(j *jail.Jail, id string) error {
	tmp := jail.TempPrefix + "id-" + id
	if err := j.Root().WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	defer j.Root().Remove(tmp)
	// A link, not a rename: an ID file made meanwhile stays.
	return j.Root().Link(tmp, jail.IDFile)
}

// validID reports whether s may be an export's identity.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == strings.ToLower(s)
}
