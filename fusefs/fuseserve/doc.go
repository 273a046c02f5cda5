// Package fuseserve answers the requests of one FUSE connection (a
// fusedev.Conn, which decodes them into bazil.org/fuse's request types)
// by calling the node and handle interfaces of bazil's fs package, in
// place of bazil's fs.Server. It owns what answering needs: the only
// table of the nodes the kernel knows (by NodeID) and of open handles (by
// HandleID), the requests in flight (for INTERRUPT), the read loop with
// its policy of answering quick requests on the goroutine that read them
// (server.go), and the kernel cache invalidations, which need NodeIDs
// (invalidate.go).
//
// Each request goes through dispatch (dispatch.go), which calls the node
// or handle method for it and returns the response or an error; serve
// alone sends the answer. The server picks no errno itself: its own
// refusals are the errors of errors.go, and Options.Errno (the adapter's
// one mapping) turns every error into an errno.
//
// The adapter above (package fusefs) implements the nodes; a few optional
// interfaces of this package (NodeReviver, NodeStatfser,
// HandleQuickFlusher) let a node or handle say what bazil's interfaces
// cannot.
package fuseserve
