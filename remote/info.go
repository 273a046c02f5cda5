package remote

import (
	"io/fs"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// fileInfo adapts a protocol entry to fs.FileInfo; its Sys is the
// entry's *fusefs.Stat where the peer gave whole-filesystem attributes.
type fileInfo struct {
	name  string
	mode  fs.FileMode // type and peerproto.ModeBits
	size  int64
	mtime time.Time
	st    *fusefs.Stat // nil: the peer said nothing more
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) Sys() any {
	if fi.st == nil {
		return nil // not a typed nil: Sys() == nil means nothing more
	}
	return fi.st
}

// typeMode returns an entry type letter as fs.FileMode type bits.
func typeMode(t byte) fs.FileMode {
	switch t {
	case peerproto.TypeDir:
		return fs.ModeDir
	case peerproto.TypeSymlink:
		return fs.ModeSymlink
	case peerproto.TypeFIFO:
		return fs.ModeNamedPipe
	case peerproto.TypeSocket:
		return fs.ModeSocket
	case peerproto.TypeCharDevice:
		return fs.ModeDevice | fs.ModeCharDevice
	case peerproto.TypeBlockDevice:
		return fs.ModeDevice
	}
	return 0
}

// info returns entry e, the peer's attributes of path, as the mount
// shows them: with the times of its own changes as it showed them
// (attrCache.shown).
func (p *peerConn) info(path string, e peerproto.Entry) *fileInfo {
	return p.shownInfo(path, p.attrs.shown(path, e))
}

// shownInfo is info for e with the times the mount shows already.
func (p *peerConn) shownInfo(path string, e peerproto.Entry) *fileInfo {
	fi := &fileInfo{
		name:  base(path),
		mode:  typeMode(e.Type) | peerproto.FileMode(e.Mode),
		size:  e.Size,
		mtime: time.Unix(0, e.Mtime),
	}
	if e.Has != 0 {
		fi.st = statOf(e, p.link.owners())
	}
	return fi
}

// statOf returns the whole-filesystem attributes of e; owners says the
// peer keeps owners (its uid= and gid= are to be shown).
func statOf(e peerproto.Entry, owners bool) *fusefs.Stat {
	st := &fusefs.Stat{Blocks: -1}
	if e.Has&peerproto.AttrIno != 0 {
		st.Ino = e.Ino
	}
	if e.Has&peerproto.AttrNlink != 0 {
		st.Nlink = uint32(min(e.Nlink, 1<<32-1))
	}
	if e.Has&(peerproto.AttrUid|peerproto.AttrGid) == peerproto.AttrUid|peerproto.AttrGid {
		st.Owners, st.Uid, st.Gid = owners, e.Uid, e.Gid
	}
	if e.Has&peerproto.AttrAtime != 0 {
		st.Atime = time.Unix(0, e.Atime)
	}
	if e.Has&peerproto.AttrCtime != 0 {
		st.Ctime = time.Unix(0, e.Ctime)
	}
	if e.Has&peerproto.AttrBlocks != 0 {
		st.Blocks = e.Blocks
	}
	if e.Has&peerproto.AttrRdev != 0 {
		st.Major, st.Minor = e.RdevMajor, e.RdevMinor
	}
	return st
}

func base(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func parent(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return ""
}

// child is the path of name in directory dir ("" for the export root).
func child(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
