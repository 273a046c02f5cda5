package jail

import (
	"errors"
	"fmt"
	"strings"

	"github.com/peerfs/peerfs/peerproto"
)

// Reserved names: clients can neither see nor touch them.
const (
	// TempPrefix starts the name of every upload in flight.
	TempPrefix = ".peerfs-tmp-"
	// UndoPrefix starts the name of an undo record: what a file changed
	// in place held before the change (the export server's put_undo.go).
	// It is a temporary file too, but one a crash must not lose; records
	// lie in the export's root only.
	UndoPrefix = TempPrefix + "undo-"
	// IDFile holds the export's identity where its filesystem has no
	// extended attributes (see the export server's identity.go).
	IDFile = ".peerfs-id"
)

// Clean validates a decoded request name and returns it in canonical form
// ("" for the export root). A name refused is a *Refusal.
func (j *Jail) Clean(name string) (string, error) {
	p, err := peerproto.CleanPath(name)
	switch {
	case errors.Is(err, peerproto.ErrPathEscapes), errors.Is(err, peerproto.ErrPathAbsolute):
		return "", &Refusal{Code: peerproto.CodeDenied, Text: fmt.Sprintf("path escapes the export: %q", name), Hostile: true}
	case errors.Is(err, peerproto.ErrPathNUL):
		return "", &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("NUL byte in name %q", name)}
	case errors.Is(err, peerproto.ErrPathTooLong):
		return "", &Refusal{Code: peerproto.CodeNameTooLong, Text: fmt.Sprintf("name too long (limit %d bytes, %d per element)", peerproto.MaxName, peerproto.MaxComponent)}
	case err != nil:
		return "", &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("bad name %q: %v", name, err)}
	}
	for _, elem := range strings.Split(p, "/") {
		if Reserved(elem) {
			return "", &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("name %q is reserved (%s*, %s)", name, TempPrefix, IDFile)}
		}
	}
	return p, nil
}

// Reserved reports whether a single path element is a reserved name: an
// upload in progress, or the file of the export's identity.
func Reserved(elem string) bool {
	return strings.HasPrefix(elem, TempPrefix) || elem == IDFile
}

// Split splits a clean path into its directory ("" for the export) and
// last element.
func Split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// Rel returns clean path p as os.Root wants it: "." for the root.
func Rel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// Display names the export root "." in messages.
func Display(name string) string {
	if name == "" {
		return "."
	}
	return name
}
