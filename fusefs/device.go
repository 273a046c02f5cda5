package fusefs

import (
	"os"
	"reflect"

	"bazil.org/fuse"
)

// device returns the FUSE device that conn reads requests from and
// answers on. bazil.org/fuse keeps it unexported, and the request server
// needs it for the few answers bazil cannot write (fuseserve/sticky.go:
// attributes with the sticky bit). nil if this version of bazil keeps it
// elsewhere (TestDeviceOfConn fails then); those answers then lose their
// sticky bit.
func device(conn *fuse.Conn) *os.File {
	v := reflect.ValueOf(conn).Elem().FieldByName("dev")
	if !v.IsValid() || v.Type() != reflect.TypeFor[*os.File]() || v.IsNil() {
		return nil
	}
	return (*os.File)(v.UnsafePointer())
}
