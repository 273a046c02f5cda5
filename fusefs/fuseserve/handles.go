package fuseserve

import (
	"context"
	"maps"
	"slices"
	"sync"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"bazil.org/fuse/fuseutil"
	"github.com/peerfs/peerfs/fusefs/fusedev"
)

// servedHandle is an open file or directory.
type servedHandle struct {
	handle bfs.Handle

	// mu is held across ReadDirAll, which may wait on the network: only
	// the READs of the same open directory wait on it, and the kernel
	// sends those one at a time.
	mu      sync.Mutex    // protects dirents and plus
	dirents []byte        // a directory's entries for READDIR, encoded at offset 0
	plus    []fuse.Dirent // a directory's entries for READDIRPLUS
}

// handleTable is the open handles, by HandleID.
type handleTable struct {
	mu   sync.Mutex // protects the fields below
	byID map[fuse.HandleID]*servedHandle
	next fuse.HandleID
}

func newHandleTable() handleTable {
	return handleTable{byID: map[fuse.HandleID]*servedHandle{}, next: 1}
}

// add registers h and returns its HandleID.
func (t *handleTable) add(h bfs.Handle) fuse.HandleID {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.next
	t.next++
	t.byID[id] = &servedHandle{handle: h}
	return id
}

// get returns the handle the kernel knows as id.
func (t *handleTable) get(id fuse.HandleID) (*servedHandle, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sh, ok := t.byID[id]
	return sh, ok
}

// remove forgets handle id and returns it.
func (t *handleTable) remove(id fuse.HandleID) (*servedHandle, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sh, ok := t.byID[id]
	delete(t.byID, id)
	return sh, ok
}

// takeAll forgets every handle and returns them.
func (t *handleTable) takeAll() []*servedHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	left := slices.Collect(maps.Values(t.byID))
	clear(t.byID)
	return left
}

// readReply is the response to a READ, READDIR or READDIRPLUS: its data
// sits in, or was copied to, buf, which respond gives back to
// Server.readBufs once sent.
type readReply struct {
	fuse.ReadResponse
	buf *[]byte
}

func (s *Server) open(ctx context.Context, sn servedNode, r *fuse.OpenRequest) (*fuse.OpenResponse, error) {
	resp := &fuse.OpenResponse{}
	h := bfs.Handle(sn.node)
	if o, ok := sn.node.(bfs.NodeOpener); ok {
		var err error
		if h, err = o.Open(ctx, r, resp); err != nil {
			return nil, err
		}
	}
	resp.Handle = s.handles.add(h)
	return resp, nil
}

// newReadReply returns an empty answer to a read of up to size bytes, in
// a buffer of s.readBufs.
func (s *Server) newReadReply(size int) *readReply {
	bp := s.readBufs.Get().(*[]byte)
	if cap(*bp) < size {
		*bp = make([]byte, size)
	}
	return &readReply{ReadResponse: fuse.ReadResponse{Data: (*bp)[:0:size]}, buf: bp}
}

// read answers a READ of a file or (r.Dir) a directory. Respond copies
// the data out, so the buffer is free again once it returns.
func (s *Server) read(ctx context.Context, sn servedNode, r *fuse.ReadRequest) (*readReply, error) {
	sh, ok := s.handles.get(r.Handle)
	if !ok {
		return nil, ErrStale
	}
	rr := s.newReadReply(r.Size)
	var err error
	if r.Dir {
		err = s.readDir(ctx, sn, sh, r, &rr.ReadResponse)
	} else if h, ok := sh.handle.(bfs.HandleReader); ok {
		err = h.Read(ctx, r, &rr.ReadResponse)
	} else {
		err = &UnsupportedError{Op: "read"}
	}
	if err != nil {
		s.readBufs.Put(rr.buf)
		return nil, err
	}
	return rr, nil
}

// listDir lists directory sn anew, each entry with an inode number (a
// made-up one where the node gives none); never nil without an error.
func listDir(ctx context.Context, sn servedNode, rd bfs.HandleReadDirAller) ([]fuse.Dirent, error) {
	ents, err := rd.ReadDirAll(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ents {
		if ents[i].Inode == 0 {
			ents[i].Inode = bfs.GenerateDynamicInode(sn.inode, ents[i].Name)
		}
	}
	if ents == nil {
		ents = []fuse.Dirent{}
	}
	return ents, nil
}

// readDir answers a READ of directory sn from its entries, listed anew
// by a read at offset 0 (a new pass: rewinddir).
func (s *Server) readDir(ctx context.Context, sn servedNode, sh *servedHandle, r *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	rd, ok := sh.handle.(bfs.HandleReadDirAller)
	if !ok {
		return &UnsupportedError{Op: "readdir"}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r.Offset == 0 || sh.dirents == nil {
		sh.dirents = nil // a failed listing leaves none to serve
		ents, err := listDir(ctx, sn, rd)
		if err != nil {
			return err
		}
		data := []byte{}
		for _, e := range ents {
			data = fuse.AppendDirent(data, e)
		}
		sh.dirents = data
	}
	fuseutil.HandleRead(r, resp, sh.dirents) // copies into resp.Data
	return nil
}

// NodeListedLookuper is a directory that can answer the lookup of a name
// it has just listed from that listing, without waiting on anything: a
// READDIRPLUS answer then carries each entry's lookup, and the kernel
// sends no LOOKUP for it (`ls -l`, `rm -r`, `cp -r` of a directory cost
// one request per page of entries instead of one per entry). ok is false
// when it cannot (the kernel looks the name up itself when it needs it).
// Like a LOOKUP, an answer counts as one reference the kernel holds.
type NodeListedLookuper interface {
	LookupListed(ctx context.Context, name string, resp *fuse.LookupResponse) (n bfs.Node, ok bool)
}

// readDirPlus answers a READDIRPLUS of directory sn: its entries from
// r.Offset (an index into the listing, which a read at offset 0 makes
// anew), each with its lookup where sn can answer it from the listing.
func (s *Server) readDirPlus(ctx context.Context, sn servedNode, r *fusedev.ReaddirplusRequest) (*readReply, error) {
	sh, ok := s.handles.get(r.Handle)
	if !ok {
		return nil, ErrStale
	}
	rd, ok := sh.handle.(bfs.HandleReadDirAller)
	if !ok {
		return nil, &UnsupportedError{Op: "readdir"}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r.Offset == 0 || sh.plus == nil {
		sh.plus = nil // a failed listing leaves none to serve
		ents, err := listDir(ctx, sn, rd)
		if err != nil {
			return nil, err
		}
		sh.plus = ents
	}
	lister, _ := sn.node.(NodeListedLookuper)
	rr := s.newReadReply(r.Size)
	out := rr.Data
	for i := max(r.Offset, 0); i < int64(len(sh.plus)); i++ {
		d := sh.plus[i]
		if len(out)+fusedev.DirentplusSize(d.Name) > r.Size {
			break
		}
		out = fusedev.AppendDirentplus(out, s.listedLookup(ctx, sn, lister, d.Name), d, uint64(i+1))
	}
	rr.Data = out
	return rr, nil
}

// listedLookup is the lookup of name in sn for a READDIRPLUS answer, nil
// where there is none to give: "." and ".." (the kernel never counts
// them), or a name sn cannot answer from its listing.
func (s *Server) listedLookup(ctx context.Context, sn servedNode, lister NodeListedLookuper, name string) *fuse.LookupResponse {
	if lister == nil || name == "." || name == ".." {
		return nil
	}
	resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
	n, ok := lister.LookupListed(ctx, name, resp)
	if !ok {
		return nil
	}
	if err := s.saveLookup(ctx, resp, sn, name, n); err != nil {
		return nil
	}
	return resp
}

func (s *Server) write(ctx context.Context, r *fuse.WriteRequest) (*fuse.WriteResponse, error) {
	sh, ok := s.handles.get(r.Handle)
	if !ok {
		return nil, ErrStale
	}
	w, ok := sh.handle.(bfs.HandleWriter)
	if !ok {
		return nil, &UnsupportedError{Op: "write"}
	}
	resp := &fuse.WriteResponse{}
	if err := w.Write(ctx, r, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) flush(ctx context.Context, r *fuse.FlushRequest) error {
	sh, ok := s.handles.get(r.Handle)
	if !ok {
		return ErrStale
	}
	if f, ok := sh.handle.(bfs.HandleFlusher); ok {
		return f.Flush(ctx, r)
	}
	return nil
}

// releaseLeft releases the handles the kernel never released, once the
// connection has ended: an abort leaves the files open in their
// processes, and an unmount right after a close drops the RELEASE the
// kernel had queued for it. No RELEASE can come any more, so without
// this each would hold its Store handle (a cache pin, a file descriptor)
// for as long as the process lives.
func (s *Server) releaseLeft() {
	left := s.handles.takeAll()
	if len(left) > 0 {
		s.log.Debug().Int("handles", len(left)).Msg("releasing the handles the kernel left open")
	}
	for _, sh := range left {
		if rel, ok := sh.handle.(bfs.HandleReleaser); ok {
			if err := rel.Release(context.Background(), &fuse.ReleaseRequest{}); err != nil {
				s.log.Warn().Err(err).Msg("release of a handle left open")
			}
		}
	}
}

func (s *Server) release(ctx context.Context, r *fuse.ReleaseRequest) error {
	sh, ok := s.handles.remove(r.Handle) // whatever Release says, the handle is gone
	if !ok {
		return ErrStale
	}
	if rel, ok := sh.handle.(bfs.HandleReleaser); ok {
		return rel.Release(ctx, r)
	}
	return nil
}
