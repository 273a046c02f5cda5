package fuseserve

import (
	"context"
	"sync"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// Default attribute and entry validity where a node sets none, as fs.Server.
const (
	defaultAttrValid  = time.Minute
	defaultEntryValid = time.Minute
)

// rootID is the NodeID of the root, which the kernel never forgets.
const rootID fuse.NodeID = 1

// NodeReviver is a node that forgets itself when the kernel forgets it
// (bfs.NodeForgetter) and must be told when the kernel knows it again:
// the kernel may forget a node after a Lookup found it and before the
// server gave it a NodeID (a FORGET answered while the lookup waited).
// Revive is called whenever the node gets a NodeID (the first time too),
// with the node table locked, as Forget is, so that the two never cross;
// neither may call back into the server.
type NodeReviver interface {
	Revive()
}

// servedNode is a node the kernel knows by a NodeID.
type servedNode struct {
	node  bfs.Node
	inode uint64 // the default of its Attr's inode number
}

// nodeTable is the nodes the kernel knows, by NodeID, and their NodeIDs.
type nodeTable struct {
	mu   sync.Mutex // protects the fields below
	byID map[fuse.NodeID]servedNode
	refs map[fuse.NodeID]uint64 // lookups the kernel has not forgotten
	ids  map[bfs.Node]fuse.NodeID
	next fuse.NodeID // NodeIDs are never reused (64 bits last)
}

func newNodeTable(root bfs.Node) nodeTable {
	return nodeTable{
		byID: map[fuse.NodeID]servedNode{rootID: {node: root, inode: 1}},
		refs: map[fuse.NodeID]uint64{rootID: 1},
		ids:  map[bfs.Node]fuse.NodeID{root: rootID},
		next: rootID + 1,
	}
}

// get returns the node the kernel knows as id.
func (t *nodeTable) get(id fuse.NodeID) (servedNode, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sn, ok := t.byID[id]
	return sn, ok
}

// id returns the NodeID the kernel knows n by.
func (t *nodeTable) id(n bfs.Node) (fuse.NodeID, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.ids[n]
	return id, ok
}

// add counts one more kernel reference to n, whose inode number is
// inode, and returns its NodeID: a new one if the kernel does not know n.
func (t *nodeTable) add(n bfs.Node, inode uint64) fuse.NodeID {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.ids[n]
	if !ok {
		// A stale NodeID can only ever miss, never name another node.
		id = t.next
		t.next++
		t.ids[n] = id
		t.byID[id] = servedNode{node: n, inode: inode}
		// The kernel may have forgotten n after the Lookup found it and
		// before now: n is known again.
		if r, ok := n.(NodeReviver); ok {
			r.Revive()
		}
	}
	t.refs[id]++
	return id
}

// forget drops n of the kernel's references to node id; the last one
// forgets the node.
func (t *nodeTable) forget(id fuse.NodeID, n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sn, ok := t.byID[id]
	if !ok || id == rootID {
		return
	}
	refs := t.refs[id] - min(n, t.refs[id])
	if refs > 0 {
		t.refs[id] = refs
		return
	}
	delete(t.byID, id)
	delete(t.refs, id)
	delete(t.ids, sn.node)
	// Under t.mu: a lookup of the same node must not get a new NodeID
	// between the table forgetting it and the node forgetting itself.
	if f, ok := sn.node.(bfs.NodeForgetter); ok {
		f.Forget()
	}
}

// attr fills a with sn's attributes, over the defaults fs.Server uses.
func (s *Server) attr(ctx context.Context, sn servedNode, a *fuse.Attr) error {
	if err := s.nodeAttr(ctx, sn.node, a); err != nil {
		return err
	}
	if a.Inode == 0 {
		a.Inode = sn.inode
	}
	return nil
}

func (s *Server) nodeAttr(ctx context.Context, n bfs.Node, a *fuse.Attr) error {
	a.Valid = defaultAttrValid
	a.Nlink = 1
	a.Atime, a.Mtime, a.Ctime = s.start, s.start, s.start
	return n.Attr(ctx, a)
}

// saveLookup fills resp for node n, found as name in parent, and counts
// one more kernel reference to it.
func (s *Server) saveLookup(ctx context.Context, resp *fuse.LookupResponse, parent servedNode, name string, n bfs.Node) error {
	if err := s.nodeAttr(ctx, n, &resp.Attr); err != nil {
		return err
	}
	if resp.Attr.Inode == 0 {
		resp.Attr.Inode = bfs.GenerateDynamicInode(parent.inode, name)
	}
	resp.Node = s.nodes.add(n, resp.Attr.Inode)
	return nil
}
