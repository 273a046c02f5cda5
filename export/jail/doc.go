// Package jail confines the export server to its export directory: every
// name a client sends is checked (Clean) and then resolved beneath the
// export, by openat2(RESOLVE_BENEATH) or, where the kernel lacks it, by
// os.Root, so that no request, and no symbolic link inside the export,
// reaches a file outside it. Its Strict view, for whole-filesystem
// connections, follows no symbolic link at all. A path longer than one
// system call takes is resolved in segments, by the same rules. It also
// words the refusals of names and of filesystem errors the protocol sends
// back (Explain).
//
// Only package export uses it.
package jail
