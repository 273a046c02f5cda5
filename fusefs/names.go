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
//
// Inode numbers: each name gets a number of the mount's own, from a
// counter (numbers stay unique among live names: tools treat equal
// numbers as hard links), and a rename carries it to the new name. Where
// the Store gives the entry's inode number on its peer (Stat.Ino), every
// name of one peer inode shows one number, so that hard links share it;
// and a name keeps its number when its peer inode changes under it (a
// peer stores a file rewritten here as a new inode, renamed over the
// old), unless another name still has the old inode.
type nameTable struct {
	entryTimeout time.Duration // how long a listing answers lookups

	mu       sync.Mutex // protects the fields below
	nodes    map[nodeKey]*node
	inodes   map[nodeKey]uint64 // a name's number
	nextIno  uint64
	byPeer   map[peerInode]uint64 // a peer inode's number
	seenAs   map[nodeKey]uint64   // the peer inode a name was last seen with
	seenBy   map[peerInode]int    // how many names seenAs has for a peer inode
	listings map[nodeKey]listing  // directory key -> recent List result
	// Listing generations (listGeneration, putListing): clock counts
	// the drops of listings; dropped has the clock at each directory's
	// last drop, peerDropped at each peer's last drop of all its
	// listings; a token below floor is refused (dropped starts afresh
	// from it when it grows past maxDropped).
	clock       uint64
	dropped     map[nodeKey]uint64
	peerDropped map[string]uint64
	floor       uint64
}

// maxDropped bounds nameTable.dropped.
const maxDropped = 4096

// peerInode is an inode number on a peer.
type peerInode struct {
	peer string
	ino  uint64
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
		byPeer:       map[peerInode]uint64{},
		seenAs:       map[nodeKey]uint64{},
		seenBy:       map[peerInode]int{},
		listings:     map[nodeKey]listing{},
		dropped:      map[nodeKey]uint64{},
		peerDropped:  map[string]uint64{},
	}
}

// node returns the node of k if it is of kind (the type bits of its
// mode), or else makes one with newNode, given k's inode number (of peer
// inode pino, 0 if unknown). The same name yields the same node for as
// long as the kernel holds it, unless the entry changed kind.
func (t *nameTable) node(k nodeKey, kind fs.FileMode, pino uint64, newNode func(ino uint64) *node) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.nodes[k]
	if !ok || n.kind != kind {
		n = newNode(t.inodeLocked(k, pino))
		t.nodes[k] = n
	}
	return n
}

// inode returns the stable inode number of (peer, path).
func (t *nameTable) inode(peer, path string) uint64 {
	return t.inodeOf(peer, path, 0)
}

// inodeOf returns the stable inode number of (peer, path), whose peer
// inode is pino (0 if unknown).
func (t *nameTable) inodeOf(peer, path string, pino uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inodeLocked(nodeKey{peer, path}, pino)
}

// inodeLocked hands out inode numbers from tables rather than a hash (see
// nameTable). Called with t.mu held.
func (t *nameTable) inodeLocked(k nodeKey, pino uint64) uint64 {
	if pino == 0 {
		ino, ok := t.inodes[k]
		if !ok {
			ino = t.newInoLocked()
			t.inodes[k] = ino
		}
		return ino
	}
	prev, seen := t.seenAs[k]
	if seen && prev == pino {
		if ino, ok := t.byPeer[peerInode{k.peer, pino}]; ok {
			return ino // the usual case: nothing changed
		}
	}
	if seen && prev != pino {
		t.unseeLocked(k)
	}
	pk := peerInode{k.peer, pino}
	ino, mapped := t.byPeer[pk]
	if !mapped {
		// The name's own number goes to its new peer inode, unless
		// another name still has the old one (that number is the old
		// file's).
		cur, named := t.inodes[k]
		if named && (!seen || t.seenBy[peerInode{k.peer, prev}] == 0) {
			ino = cur
		} else {
			ino = t.newInoLocked()
		}
		t.byPeer[pk] = ino
	}
	if _, ok := t.seenAs[k]; !ok {
		t.seenAs[k] = pino
		t.seenBy[pk]++
	}
	t.inodes[k] = ino
	return ino
}

func (t *nameTable) newInoLocked() uint64 {
	t.nextIno++
	return t.nextIno
}

// unseeLocked forgets which peer inode k was seen with; a peer inode no
// name has any more loses its number. Called with t.mu held.
func (t *nameTable) unseeLocked(k nodeKey) {
	prev, ok := t.seenAs[k]
	if !ok {
		return
	}
	delete(t.seenAs, k)
	pk := peerInode{k.peer, prev}
	if t.seenBy[pk]--; t.seenBy[pk] <= 0 {
		delete(t.seenBy, pk)
		delete(t.byPeer, pk)
	}
}

// siblings returns the nodes of other names of peer inode pino of peer
// (hard links), except n.
func (t *nameTable) siblings(peer string, pino uint64, n *node) []*node {
	if pino == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	others := t.seenBy[peerInode{peer, pino}]
	if n != nil && t.seenAs[n.key()] == pino {
		others--
	}
	if others <= 0 {
		return nil // the usual case: no other name of it is known
	}
	var out []*node
	for k, other := range t.nodes {
		if other != n && k.peer == peer && t.seenAs[k] == pino {
			out = append(out, other)
		}
	}
	return out
}

// lookupNode returns the node of k, or nil if the kernel holds none.
func (t *nameTable) lookupNode(k nodeKey) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nodes[k]
}

// lookupSelf returns the kind-specific node (*dir, *file...) of k, or nil.
func (t *nameTable) lookupSelf(k nodeKey) bfs.Node {
	if n := t.lookupNode(k); n != nil {
		return n.self
	}
	return nil
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
	t.unseeLocked(k)
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
	t.unseeLocked(to)
	if ino, ok := t.inodes[from]; ok {
		delete(t.inodes, from)
		t.inodes[to] = ino
	}
	if pino, ok := t.seenAs[from]; ok {
		delete(t.seenAs, from)
		t.seenAs[to] = pino
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
	if n, ok := t.nodes[from]; ok && !n.isDir() {
		if old, ok := t.nodes[to]; !ok || !old.isDir() {
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
	for k := range t.seenAs {
		if k.under(to) {
			t.unseeLocked(k)
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
	movedSeen := map[nodeKey]uint64{}
	for k, pino := range t.seenAs {
		if k.under(from) {
			delete(t.seenAs, k)
			movedSeen[rekey(k)] = pino
		}
	}
	for k, pino := range movedSeen {
		t.seenAs[k] = pino
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
	return t.clock
}

// putListing stores a List result of directory d unless d's listing was
// dropped since gen was taken: the result may predate that change. The
// drop of another directory's listing does not count.
func (t *nameTable) putListing(d nodeKey, gen uint64, infos []fs.FileInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen < t.floor || t.dropped[d] > gen || t.peerDropped[d.peer] > gen {
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
	p, _ := k.parent()
	t.dropDirLocked(p)
	t.dropDirLocked(k)
}

// dropDirLocked forgets directory d's listing, and refuses the List
// results of d on their way (putListing). Called with t.mu held.
func (t *nameTable) dropDirLocked(d nodeKey) {
	t.clock++
	delete(t.listings, d)
	if len(t.dropped) >= maxDropped {
		clear(t.dropped)
		t.floor = t.clock
		return
	}
	t.dropped[d] = t.clock
}

// dropPeerListingsLocked forgets every listing of peer ("": of every
// peer), and refuses their List results on their way. Called with t.mu
// held.
func (t *nameTable) dropPeerListingsLocked(peer string) {
	t.clock++
	if peer == "" {
		t.floor = t.clock
		clear(t.dropped)
		clear(t.peerDropped)
	} else {
		t.peerDropped[peer] = t.clock
	}
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
	// expire: the kernel is to look it up again at its next use,
	// keeping it meanwhile (kernelCache.ExpireEntry), not drop it.
	expire bool
}

// staleName forgets the listing of the directory holding the name ch
// is about, and returns what the kernel may cache of it and its
// directory (whose node goes in attrs: its times and link count moved).
// nodes are the nodes whose own cached attributes go (node.forgetAttrs).
//
// A directory the kernel holds that is gone, replaced, of another type
// or inode now, or whose path may lead elsewhere (UNWATCHED), may have
// other entries now, unreported: its listings and those under it go, and
// its entry and those of its children the kernel holds are expired, not
// dropped (kernelCache.ExpireEntry): the kernel looks each up again at
// its next use, and keeps it if it finds the same node, so that a
// process whose working directory was moved away and back keeps a
// working getcwd (a name is its node here: the same path, the same
// node). Entries the kernel holds of names it found missing in it are
// left to their timeout.
//
// Otherwise the name's entry is dropped if it is gone or replaced, if
// the kernel holds no node for it (at most a negative entry), or if its
// node is of another type than it is now; else its node goes in data if
// a file (its cached pages, and attributes, go) or in attrs. A file's
// other names (hard links) are left to their attribute timeout: finding
// them would walk every node.
func (t *nameTable) staleName(ch EntryChange) (entries []staleEntry, data, attrs []bfs.Node, nodes []*node) {
	k := nodeKey{ch.Peer, ch.Path}
	t.mu.Lock()
	defer t.mu.Unlock()
	n, known := t.nodes[k]
	pino := t.seenAs[k]
	moved := known && n.kind == fs.ModeDir &&
		(ch.Gone || ch.Replaced || ch.Type != fs.ModeDir || ch.Ino != 0 && pino != 0 && ch.Ino != pino)
	entry := moved || !known || ch.Gone || ch.Replaced || n.kind != ch.Type
	add := func(m *node) {
		nodes = append(nodes, m)
		if m.kind == 0 {
			data = append(data, m.self)
		} else {
			attrs = append(attrs, m.self)
		}
	}
	if known {
		add(n)
	}
	if moved || !known && (ch.Gone || ch.Type == fs.ModeDir) {
		// What was listed in it, or under it, may be another
		// directory's.
		for d := range t.listings {
			if d.under(k) {
				t.dropDirLocked(d)
			}
		}
		t.dropDirLocked(k)
	}
	if moved {
		for ck, cn := range t.nodes {
			if cp, name := ck.parent(); ck.path != "" && cp == k {
				entries = append(entries, staleEntry{n.self, name, true})
				add(cn)
			}
		}
	}
	if ch.Path == "" {
		return nil, data, attrs, nodes
	}
	p, name := k.parent()
	t.dropDirLocked(p)
	if pn, ok := t.nodes[p]; ok {
		if entry {
			entries = append(entries, staleEntry{pn.self, name, moved})
		}
		attrs = append(attrs, pn.self)
	}
	return entries, data, attrs, nodes
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
		t.dropDirLocked(scope)
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
			entries = append(entries, staleEntry{parent: pn.self, name: name})
		}
		switch n.kind {
		case fs.ModeDir:
			attrs = append(attrs, n.self)
		case 0:
			data = append(data, n.self)
		default:
			attrs = append(attrs, n.self) // a link or special file: no data here
		}
	}
	return entries, data, attrs
}
