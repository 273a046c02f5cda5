package remote

import (
	"io/fs"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// fileInfo adapts a protocol entry to fs.FileInfo.
type fileInfo struct {
	name  string
	dir   bool
	mode  fs.FileMode
	size  int64
	mtime time.Time
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.dir }
func (fi *fileInfo) Sys() any           { return nil }
func (fi *fileInfo) Mode() fs.FileMode {
	if fi.dir {
		return fi.mode | fs.ModeDir
	}
	return fi.mode
}

func infoOf(name string, e peerproto.Entry) *fileInfo {
	return &fileInfo{
		name:  name,
		dir:   e.IsDir(),
		mode:  fs.FileMode(e.Mode) & fs.ModePerm,
		size:  e.Size,
		mtime: time.Unix(0, e.Mtime),
	}
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
