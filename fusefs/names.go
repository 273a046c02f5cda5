package fusefs

import (
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	bfs "bazil.org/fuse/fs"
)

// Lock order: nameTable.mu before node.mu. Neither is held across a Store
// call, so open files and directories never serialize each other.

// nodeKey names an entry: a path inside a peer's export ("" is its root).
type nodeKey struct{ peer, path string }

// parent returns the key of the directory holding k, and k's base name.
func (k nodeKey) parent() (nodeKey, string) {
	i := strings.LastIndexByte(k.path, '/')
	if i < 0 {
		return nodeKey{k.peer, ""}, k.path
	}
	return nodeKey{k.peer, k.path[:i]}, k.path[i+1:]
}

// under reports whether k is p or inside p.
func (k nodeKey) under(p nodeKey) bool {
	if k.peer != p.peer {
		return false
	}
	return p.path == "" || k.path == p.path || strings.HasPrefix(k.path, p.path+"/")
}

// child joins a name onto a directory path.
func child(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// nameTable is the mount's names as the kernel may hold them: the node of
// each (peer, path) the kernel knows, stable inode numbers, and recent
// directory listings. The kernel's NodeIDs are the request server's
// business (fuseserve); this table knows names only.
type nameTable struct {
	entryTimeout time.Duration // how long a listing answers lookups

	mu       sync.Mutex // protects the fields below
	nodes    map[nodeKey]*node
	inodes   map[nodeKey]uint64
	nextIno  uint64
	listings map[nodeKey]listing // directory key -> recent List result
	listGen  uint64              // bumped whenever a listing is dropped
}

// listing is a directory's List result, which answers Lookup for a while
// so that ls -l does not Stat every entry.
type listing struct {
	at      time.Time
	entries map[string]fs.FileInfo
}

func newNameTable(entryTimeout time.Duration) *nameTable {
	return &nameTable{
		entryTimeout: entryTimeout,
		nodes:        map[nodeKey]*node{},
		inodes:       map[nodeKey]uint64{},
		nextIno:      1, // 1 is the root
		listings:     map[nodeKey]listing{},
	}
}

// node returns the node of k if it is of the kind isDir says, or else
// makes one with newNode, given k's inode number. The same name yields
// the same node for as long as the kernel holds it, unless the entry
// changed kind.
func (t *nameTable) node(k nodeKey, isDir bool, newNode func(ino uint64) *node) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[k]
	if !ok || n.isDir != isDir {
		n = newNode(t.inodeLocked(k))
		t.nodes[k] = n
	}
	return n
}

// inode returns the stable inode number of (peer, path).
func (t *nameTable) inode(peer, path string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inodeLocked(nodeKey{peer, path})
}

// inodeLocked hands out inode numbers from a table rather than a hash:
// numbers stay unique among live names (tools treat equal inodes as hard
// links), and a rename carries the number to the new name.
func (t *nameTable) inodeLocked(k nodeKey) uint64 {
	ino, ok := t.inodes[k]
	if !ok {
		t.nextIno++
		ino = t.nextIno
		t.inodes[k] = ino
	}
	return ino
}

// forget drops n from the table if the table still points at it.
func (t *nameTable) forget(n *node) {
	k := n.key()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes[k] == n {
		delete(t.nodes, k)
	}
}

// revive puts n back in the table, unless a newer node took its key.
func (t *nameTable) revive(n *node) {
	k := n.key()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.nodes[k]; !ok {
		t.nodes[k] = n
	}
}

// removed updates the tables after (peer, path) was unlinked through the
// mount: the node stays valid for open handles but no longer names path.
func (t *nameTable) removed(k nodeKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.nodes[k]; ok {
		delete(t.nodes, k)
		n.markRemoved()
	}
	delete(t.inodes, k)
	t.dropListingLocked(k)
}

// renamedFileLocked is renamed for file node n at from, with no directory
// at to. Called with t.mu held.
func (t *nameTable) renamedFileLocked(n *node, from, to nodeKey) {
	if old, ok := t.nodes[to]; ok && old != n {
		old.markRemoved()
	}
	delete(t.nodes, from)
	t.nodes[to] = n
	n.moved(to.path)
	delete(t.inodes, to)
	if ino, ok := t.inodes[from]; ok {
		delete(t.inodes, from)
		t.inodes[to] = ino
	}
	t.dropListingLocked(from)
	t.dropListingLocked(to)
}

// renamed moves from and everything under it to to, in both tables and in
// the nodes' paths, after a successful Store rename. An entry replaced at
// to becomes removed.
func (t *nameTable) renamed(from, to nodeKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.nodes[from]; ok && !n.isDir {
		if old, ok := t.nodes[to]; !ok || !old.isDir {
			// A file over a file (or a new name): nothing lies under
			// either name, so no table needs a scan (rsync and editors
			// rename one file after another).
			t.renamedFileLocked(n, from, to)
			return
		}
	}
	// Whatever the tables hold at or under to was replaced (a file, or
	// an empty directory).
	for k, n := range t.nodes {
		if k.under(to) {
			delete(t.nodes, k)
			n.markRemoved()
		}
	}
	for k := range t.inodes {
		if k.under(to) {
			delete(t.inodes, k)
		}
	}
	rekey := func(k nodeKey) nodeKey {
		return nodeKey{to.peer, to.path + k.path[len(from.path):]}
	}
	moved := map[nodeKey]*node{}
	for k, n := range t.nodes {
		if k.under(from) {
			delete(t.nodes, k)
			moved[rekey(k)] = n
		}
	}
	for k, n := range moved {
		t.nodes[k] = n
		n.moved(k.path)
	}
	movedIno := map[nodeKey]uint64{}
	for k, ino := range t.inodes {
		if k.under(from) {
			delete(t.inodes, k)
			movedIno[rekey(k)] = ino
		}
	}
	for k, ino := range movedIno {
		t.inodes[k] = ino
	}
	// Listings under the old name are stale; so are the parents'.
	t.dropPeerListingsLocked(from.peer)
}

// getListing returns the entry name of directory d from a listing younger
// than the entry timeout.
func (t *nameTable) getListing(d nodeKey, name string) (fs.FileInfo, bool, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.listings[d]
	if !ok {
		return nil, false, false
	}
	if time.Since(l.at) > t.entryTimeout {
		delete(t.listings, d)
		return nil, false, false
	}
	info, found := l.entries[name]
	return info, found, true
}

// listGeneration returns a token for putListing.
func (t *nameTable) listGeneration() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.listGen
}

// putListing stores a List result unless a listing was dropped since gen
// was taken: the result may predate that change.
func (t *nameTable) putListing(d nodeKey, gen uint64, infos []fs.FileInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.listGen {
		return
	}
	now := time.Now()
	if len(t.listings) >= 256 {
		for k, l := range t.listings {
			if now.Sub(l.at) > t.entryTimeout {
				delete(t.listings, k)
			}
		}
	}
	entries := make(map[string]fs.FileInfo, len(infos))
	for _, info := range infos {
		entries[info.Name()] = info
	}
	t.listings[d] = listing{at: now, entries: entries}
}

// dropListing forgets the listing that holds k (its parent's), after k
// changed through the mount.
func (t *nameTable) dropListing(k nodeKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropListingLocked(k)
}

func (t *nameTable) dropListingLocked(k nodeKey) {
	t.listGen++
	p, _ := k.parent()
	delete(t.listings, p)
	delete(t.listings, k)
}

func (t *nameTable) dropPeerListingsLocked(peer string) {
	t.listGen++
	for k := range t.listings {
		if k.peer == peer || peer == "" {
			delete(t.listings, k)
		}
	}
}

// dropPeersGone forgets the listings of every peer in names that is not
// in now, after the peer list changed.
func (t *nameTable) dropPeersGone(names, now []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range names {
		if !slices.Contains(now, p) {
			t.dropPeerListingsLocked(p)
		}
	}
}

// staleEntry is a name the kernel may have cached in directory parent.
type staleEntry struct {
	parent bfs.Node
	name   string
}

// stale forgets the listings a change under (peer, dir) made stale and
// returns what the kernel may cache of it: the entries, the files whose
// data and the nodes whose attributes are to be dropped. dir == "" means
// anything of the peer; otherwise the change is to dir's listing.
func (t *nameTable) stale(peer, dir string) (entries []staleEntry, data, attrs []bfs.Node) {
	scope := nodeKey{peer, dir}
	t.mu.Lock()
	defer t.mu.Unlock()
	if dir == "" {
		t.dropPeerListingsLocked(peer)
	} else {
		t.listGen++
		delete(t.listings, scope)
	}
	for k, n := range t.nodes {
		if k.path == "" {
			if k.peer == peer {
				attrs = append(attrs, n.self)
			}
			continue
		}
		p, name := k.parent()
		if dir == "" && !k.under(scope) || dir != "" && p != scope {
			if dir != "" && k == scope {
				attrs = append(attrs, n.self)
			}
			continue
		}
		if pn, ok := t.nodes[p]; ok {
			entries = append(entries, staleEntry{pn.self, name})
		}
		if n.isDir {
			attrs = append(attrs, n.self)
		} else {
			data = append(data, n.self)
		}
	}
	return entries, data, attrs
}
