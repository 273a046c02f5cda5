// Package etcdstate keeps what tracker replicas share (tracker.Shared)
// in etcd, with etcd's own client and concurrency packages: no consensus
// of its own.
//
// Under a prefix (default "/peerfs/"):
//
//	members/<name>   a registered peer (JSON tracker.Member), attached to
//	                 the lease of its replica's session: a replica that
//	                 dies takes its members with it once the lease runs out
//	round            the SYNC round (JSON tracker.RoundState), changed by
//	                 compare-and-swap on its revision
//	token/<lease>    the write token: a concurrency.Mutex of the session;
//	                 a round is recorded through it only while its key
//	                 exists at the revision it was taken (IsOwner), so a
//	                 holder whose session lapsed is fenced off
//
// Registration order is the members' creation revision. A replica
// follows the prefix with one Get and then a Watch from the next
// revision (with the previous values, so that a deleted member's last
// value says whether it quit).
package etcdstate
