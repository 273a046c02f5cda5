// Package peer is the peer daemon: it serves an export to other peers, and
// talks to other peers and the tracker.
//
// The serving half is Server: it shares one directory (the export) with any
// number of clients at once, speaking the line protocol of package
// peerproto over TCP. Every name a client sends is checked with
// peerproto.CleanPath and then resolved through an os.Root, so no request,
// and no symbolic link inside the export, can reach a file outside it.
// Uploads land in a temporary file and are renamed over their target only
// once complete and fsynced, so a reader never sees a half-written file and
// an interrupted upload leaves the old content intact.
//
// The client half dials other peers and the tracker on behalf of the local
// user (the shell and the FUSE mount).
package peer
