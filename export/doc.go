// Package export is the export server: it shares one directory (the
// export) with any number of peers at once, speaking the line protocol of
// package peerproto over TCP (TLS with membership proofs when
// Options.Secure is set).
//
// Every name a client sends is checked and then resolved beneath the
// export by package export/jail, so no request, and no symbolic link
// inside the export, can reach a file outside it. Uploads land in a
// temporary file and are renamed over their target only once complete
// (and fsynced, unless async), so a reader never sees a half-written file
// and an interrupted upload leaves the old content intact.
//
// The files: server.go (Options, Server: accept, admit, close), conn.go
// (one connection: read a request, dispatch, reply or refuse), put.go,
// get.go, list.go (LIST, STAT) and ops.go (the namespace requests), files.go
// (the cache of descriptors GET reuses), versions.go (version tokens),
// identity.go (the export's identity), rate.go (the minimum transfer
// rate), entry.go (attributes as protocol entries).
package export
