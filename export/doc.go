// Package export is the export server: it shares one directory (the
// export) with any number of peers at once, speaking the line protocol of
// package peerproto over TCP (TLS with membership proofs when
// Options.Secure is set).
//
// Every name a client sends is checked and then resolved beneath the
// export by package export/jail, so no request, and no symbolic link
// inside the export, can reach a file outside it. A connection in
// whole-filesystem mode ("FEATURES posix") resolves through the jail's
// Strict view, which follows no symbolic link at all: links are data
// there, listed and read as themselves.
//
// Uploads land in a temporary file and are renamed over their target only
// once complete (and fsynced, unless async), so a reader never sees a
// half-written file and an interrupted upload leaves the old content
// intact. The one exception is an upload to a file with other hard links
// on a posix connection, which is written in place, as a local write is,
// so that every name shows it.
//
// The files: server.go (Options, Server: accept, admit, close), conn.go
// (one connection: read a request, dispatch, reply or refuse), put.go,
// put_inplace.go (a PUT to a hard-linked file), get.go, list.go (LIST,
// STAT), ops.go (the namespace requests), setattr.go, links.go (SYMLINK,
// READLINK, LINK, MKNOD), files.go (the cache of descriptors GET reuses),
// versions.go (version tokens), identity.go (the export's identity),
// rate.go (the minimum transfer rate), entry.go (attributes as protocol
// entries).
package export
