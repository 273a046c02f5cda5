// Package fusedev speaks the Linux FUSE device protocol (linux/fuse.h):
// it mounts a directory through fusermount3, negotiates the connection
// (INIT), decodes the kernel's requests and encodes the answers and
// notifications. It owns bytes and the device, nothing else: which node a
// request is about and what to answer is package fuseserve's.
//
// Requests are decoded into bazil.org/fuse's request types, used as plain
// data (their Respond methods must not be called: the Conn answers, with
// Reply and ReplyError), so that the nodes of package fusefs keep
// implementing bazil's fs interfaces. This package exists because
// bazil.org/fuse negotiates a fixed set of features and cannot be told to
// offer more: READDIRPLUS (a listing that carries each entry's
// attributes, so that `ls -l` costs one request per page of entries
// instead of one per entry) is the first it adds, and attributes keep
// their sticky bit (bazil's encoding drops it).
//
// Layouts are those of protocol 7.33, the version negotiated (the
// kernel's if it is older, down to 7.31: Mount refuses older kernels).
package fusedev
