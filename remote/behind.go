package remote

// Write-behind for the namespace: an unlink or rmdir of a name this mount
// holds nothing of (no local copy, no open handle), and a rename of such
// a file, is acknowledged as soon as it is recorded in the cache's
// journal (cache.Journal) and carried out on its peer in the background,
// in order, up to peer.MaxBatch per round trip (peer.Conn.Batch). Until
// then this mount answers as if it were done: a removed name is hidden
// from lookups and listings (hidden), a directory whose every entry is
// hidden is empty to rmdir, and a renamed file's attributes and cached
// content are under its new name.
//
// Ordering: every other request that changes the peer's export (an
// upload, a mkdir...) waits in poolDo until the queue before it is
// carried out (behind.wait), so the peer sees this mount's changes in
// the order they were made; while a rename waits, so does every request
// to that peer (the peer has the old file at the new name). fsync, a SYNC
// turn (FlushAll) and unmount (drain, FlushAll) wait for the queue too. A
// crash of the mount loses nothing: the next run replays what the
// journal holds, to the same export only, and a DELETE or RENAME only
// while the file is still the version it was here.
//
// A peer's refusal (EACCES, a directory someone else filled...) undoes
// the change here, so the names show as the peer has them, is logged, and
// is the error of the next fsync or SYNC turn of this mount; for a while
// after it (syncAfterRefusal) that peer's changes go synchronously
// again, so a program hears the next refusal itself.
//
// Directories made and directories' attributes changed are written
// behind too (behind_make.go).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// syncAfterRefusal is how long a peer's unlinks and rmdirs go
// synchronously after it refused one that was written behind.
const syncAfterRefusal = time.Minute

// behindLinger is how long the sender waits for a short queue to fill
// before it sends, while nobody waits for it (behind.lingers).
const behindLinger = 5 * time.Millisecond

// Bounds of the sender's wait between attempts while a peer does not
// answer.
const (
	behindRetryMin = 50 * time.Millisecond
	behindRetryMax = 5 * time.Second
)

// replayBehind queues what the journal held at start (an earlier run's
// acknowledged operations) and returns the peers whose senders the
// caller must start.
func (s *Store) replayBehind() (senders []string) {
	for _, op := range s.ns.journal.Pending() {
		start, _ := s.ns.push(op, true)
		s.log.Info().Str("peer", op.Peer).Str("path", op.Path).Str("op", op.Op).Msg("found a change acknowledged by an earlier run (written behind); carrying it out")
		if start {
			senders = append(senders, op.Peer)
		}
	}
	return senders
}

// removeBehind acknowledges the removal of path (a directory if dir) on
// p by queueing it. The caller checked that nothing of it is local.
func (s *Store) removeBehind(p *peerConn, path string, dir bool) error {
	op := cache.NamespaceOp{Op: cache.OpDelete, Peer: p.name, Path: path}
	if dir {
		op.Op = cache.OpRmdir
	} else if op.Version = p.attrs.lastVersion(path); op.Version == "" {
		// Without it a replay could remove another writer's file.
		return errNoVersion
	}
	if id := p.link.peerID(); id != "" {
		op.Owner = s.owner(p)
	}
	// Shown before it is queued (attrCache.queuing), as mkdirBehind
	// does: a sender already running may take it into a batch at once,
	// and that batch's STAT must find the directory's guess to tie it.
	queued := p.attrs.queuing(parent(path))
	p.attrs.gone(path)
	p.attrs.entryChanged(parent(path), s.now().UnixNano(), true, dir)
	start, err := s.pushShown(op, queued)
	if err != nil {
		p.attrs.forgetTree(path)
		p.attrs.changed(parent(path))
		return err
	}
	if start {
		s.startSender(p.name)
	}
	return nil
}

// pushShown queues op (behind.push), whose guessed times this mount
// already shows, and then calls queued (the done of attrCache.queuing),
// whatever happens.
func (s *Store) pushShown(op cache.NamespaceOp, queued func()) (start bool, err error) {
	defer queued()
	return s.ns.push(op, false)
}

// renameBehind acknowledges the rename of file from to to on p by
// queueing it (renameBehindOK said it may be). This mount's caches move
// the file at once: its attributes (ctime now), its cached content, its
// directories' times.
func (s *Store) renameBehind(p *peerConn, from, to string) error {
	op := cache.NamespaceOp{Op: cache.OpRename, Peer: p.name, Path: from, To: to, ToVersion: p.attrs.lastVersion(to)}
	if op.Version = p.attrs.lastVersion(from); op.Version == "" {
		return errNoVersion
	}
	if id := p.link.peerID(); id != "" {
		op.Owner = s.owner(p)
	}
	// Shown before it is queued, as removeBehind does.
	queued := p.attrs.queuing(parent(from), parent(to), to)
	now := s.now().UnixNano()
	p.attrs.moved(from, to)
	p.attrs.changedAt(to, now)
	p.attrs.entryChanged(parent(from), now, true, false)
	p.attrs.entryChanged(parent(to), now, false, false)
	start, err := s.pushShown(op, queued)
	if err != nil {
		p.attrs.forget(from)
		p.attrs.forget(to)
		p.attrs.changed(parent(from))
		p.attrs.changed(parent(to))
		return err
	}
	_ = s.cache.Rename(cache.Key{Peer: p.name, Path: from}, cache.Key{Peer: p.name, Path: to})
	if start {
		s.startSender(p.name)
	}
	return nil
}

// renameBehindOK reports whether the rename of from to to on p may be
// written behind: as a removal may (writeBehind), and from is a file
// whose attributes are known, nothing of either name is local here (a
// copy, an open handle), and to is no directory and has one name.
// Anything else (a directory's subtree, hard links, a copy being
// written) is renamed synchronously.
func (s *Store) renameBehindOK(p *peerConn, from, to string) bool {
	if from == to || under(to, from) || len(to) > peerproto.MaxName || !s.writeBehind(p, cache.Key{Peer: p.name, Path: from}, nil, false) {
		return false
	}
	if e, exists, ok := p.attrs.cached(from); !ok || !exists || e.IsDir() {
		return false
	}
	if e, exists, ok := p.attrs.cached(to); ok && exists && e.IsDir() || p.attrs.linked(to) != 0 {
		return false
	}
	if len(s.statesUnder(p.name, from)) > 0 || len(s.statesUnder(p.name, to)) > 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.handles {
		if h.key == (cache.Key{Peer: p.name, Path: to}) {
			return false
		}
	}
	return true
}

// errNoVersion refuses to write behind a change to a file whose version
// this mount does not know: its replay could not tell the file from
// another writer's. It is done synchronously instead.
var errNoVersion = errors.New("remote: version unknown; not written behind")

// startSender starts the goroutine that carries out peer's queue, unless
// the Store is closed (the queue waits in the journal then).
func (s *Store) startSender(peer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go s.sendBehind(peer)
}

// resumeBehind starts the senders of the queues that wait for a peer this
// mount did not know (SetPeers calls it: the peer may be back).
func (s *Store) resumeBehind() {
	for _, name := range s.ns.idle() {
		if _, err := s.peer(name); err == nil && s.ns.resume(name) {
			s.startSender(name)
		}
	}
}

// senderKey marks the sender's requests in their context: they are the
// queue, and do not wait for it (poolDo).
type senderKey struct{}

// sendBehind carries out peer's queue, batch after batch, until it is
// empty or the Store closes; while the peer does not answer it tries
// again, waiting longer each time (or until a wait kicks it).
func (s *Store) sendBehind(peerName string) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), senderKey{}, true))
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	kick := s.ns.kicker(peerName)
	pause := behindRetryMin
	linger := time.NewTimer(0)
	defer linger.Stop()
	for {
		if s.ns.lingers(peerName, peer.MaxBatch) {
			// A burst (rm -r) goes out in fuller batches: fewer round
			// trips and less CPU per operation, on both sides.
			linger.Reset(behindLinger)
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-linger.C:
			}
		}
		ops := s.ns.head(peerName, peer.MaxBatch)
		if len(ops) == 0 {
			return
		}
		err := s.sendBatch(ctx, peerName, ops)
		if err == nil {
			pause = behindRetryMin
			continue
		}
		if errors.Is(err, errNoPeer) {
			// Left or forgotten: its queue waits for its return
			// (resumeBehind), in the journal. A SetPeers that brought
			// it back since found this sender still running: look
			// again once parked.
			s.ns.stopSending(peerName)
			if _, err := s.peer(peerName); err == nil && s.ns.resume(peerName) {
				continue
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-time.After(pause):
		}
		pause = min(2*pause, behindRetryMax)
	}
}

// sendBatch carries out ops, the front of peer's queue, in one round trip
// where it can, and records what came of each.
func (s *Store) sendBatch(ctx context.Context, peerName string, ops []*nsOp) error {
	p, err := s.peer(peerName)
	if err != nil {
		s.ns.finished(peerName, ops, nil, err)
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.Client.IOTimeout+10*time.Second)
	defer cancel()
	if err := s.identify(rctx, p); err != nil {
		s.ns.finished(peerName, ops, nil, err)
		return err
	}
	// An operation made for another export, or replayed for a file that
	// changed since, is given up (done) at the front; the rest go out.
	outs := make([]error, 0, len(ops))
	for len(outs) < len(ops) {
		skip, err := s.giveUp(rctx, p, ops[len(outs)])
		if err != nil {
			s.finishBatch(p, ops, outs, err)
			return err
		}
		if !skip {
			break
		}
		outs = append(outs, errGivenUp)
	}
	i := len(outs)
	if i == len(ops) {
		s.finishBatch(p, ops, outs, nil)
		return nil
	}
	end := i
	for end < len(ops) && !ops[end].replayed && !forMkdirIn(ops[i:end], ops[end]) {
		end++
	}
	if end == i && i < len(ops) {
		end = i + 1 // a replayed operation checked by giveUp: alone
	}
	// Behind the changes, in the same round trip, a STAT of each path
	// whose times this mount guessed for them: the peer's are tied to
	// the guess (attrs_times.go).
	var settle []string
	end, settle = settleFor(p, ops, i, end)
	msgs := make([]peerproto.Message, 0, end-i+len(settle))
	feats, _ := p.link.features() // as the connection just identified says
	for _, op := range ops[i:end] {
		switch op.Op {
		case cache.OpRmdir:
			msgs = append(msgs, peerproto.Rmdir{Name: op.Path})
		case cache.OpRename:
			msgs = append(msgs, peerproto.Rename{From: op.Path, To: op.To})
		case cache.OpMkdir:
			msgs = append(msgs, s.mkdirOf(p, op.NamespaceOp, feats))
		case cache.OpSetattr:
			msgs = append(msgs, setattrOf(op.NamespaceOp))
		default:
			msgs = append(msgs, peerproto.Delete{Name: op.Path})
		}
	}
	for _, path := range settle {
		msgs = append(msgs, peerproto.Stat{Name: path})
	}
	// A RENAME must not go twice: a connection that died after the peer
	// carried it out looks like one that died before. So the batch is
	// not sent again on a new connection, and what it left unanswered is
	// checked before it goes again (replayed, giveUp).
	bctx := peer.NoRetry(rctx)
	var (
		replies []peerproto.Message
		got     []error
	)
	// Their reports may come before the batch's answer, or after it:
	// marked as this mount's own as it goes, and again once answered.
	own := func() {
		for _, op := range ops[i:end] {
			switch op.Op {
			case cache.OpSetattr:
				p.attrs.ownAttrs(op.Path)
			case cache.OpRename:
				p.attrs.ownChange(op.Path, op.To)
			default:
				p.attrs.ownChange(op.Path)
			}
		}
	}
	err = s.poolDo(bctx, p, msgs[0].Verb(), func(c *peer.Conn) error {
		own()
		var err error
		replies, got, err = c.Batch(bctx, msgs)
		return err
	})
	own()
	var answers []setattrAnswer
	nops := min(len(got), end-i) // the answers to ops; the STATs' follow
	if err != nil {
		s.ns.unsure(ops[i+nops : end])
	}
	for j, e := range got[:nops] {
		op := ops[i+j]
		e, aerr := s.behindOutcome(rctx, p, op, e)
		if aerr != nil {
			// Its outcome could not be told (the peer stopped
			// answering the check): it and the rest go again,
			// checked first, as after a lost answer.
			s.ns.unsure(ops[i+j : end])
			s.finishBatch(p, ops, outs, netErr(p, aerr))
			return netErr(p, aerr)
		}
		if e != nil && !errors.Is(e, errGivenUp) {
			e = fmt.Errorf("remote: %s of %s:%s, acknowledged here, was refused by the peer: %w", op.Op, peerName, op.Path, netErr(p, e))
		}
		if r, ok := replies[j].(peerproto.SetattrOK); ok && e == nil && !touchedAfter(op.Path, ops[i+j+1:end]) {
			answers = append(answers, setattrAnswer{op, r.Entry})
		}
		outs = append(outs, e)
	}
	s.finishBatch(p, ops, outs, netErrOrNil(p, err))
	// What the peer stored (a coarse clock keeps whole seconds), unless
	// another change to it here is still to show (answered).
	for _, a := range answers {
		p.attrs.answered(a.op.Path, a.e, a.op.Mtime != nil && *a.op.Mtime != cache.TimeNow)
	}
	for k, path := range settle {
		if j := end - i + k; j < len(got) && got[j] == nil {
			if r, ok := replies[j].(peerproto.StatOK); ok {
				p.attrs.settled(path, r.Entry)
			}
		}
	}
	return netErrOrNil(p, err)
}

// touchedAfter reports whether one of later, the changes carried out
// after a SETATTR of path in its batch, changed path's attributes (its
// own SETATTR, an entry made, removed or renamed in it: settleOf) or
// removed or moved it: the SETATTR's answer is then of a state that is
// gone (the STAT behind the batch gives the one after them all). A
// change of an ancestor (its times, an entry in it) does not touch it:
// no STAT of path goes behind such a change, and its guess is tied by
// this answer or by none.
func touchedAfter(path string, later []*nsOp) bool {
	for _, op := range later {
		if op.Path == path || slices.Contains(settleOf(op), path) {
			return true
		}
		switch op.Op {
		case cache.OpDelete, cache.OpRmdir, cache.OpRename:
			if under(path, op.Path) || op.To != "" && under(path, op.To) {
				return true
			}
		}
	}
	return false
}

// setattrAnswer is the peer's answer to a SETATTR written behind.
type setattrAnswer struct {
	op *nsOp
	e  peerproto.Entry
}

// settleFor returns the paths whose times this mount guessed for
// ops[i:end] (settleOf) and has not tied to the peer's yet, in the order
// of the changes, and where the batch ends so that its changes and those
// STATs fit in one (end, at least i+1).
func settleFor(p *peerConn, ops []*nsOp, i, end int) (int, []string) {
	var all []string
	for _, op := range ops[i:end] {
		all = append(all, settleOf(op)...)
	}
	untied := p.attrs.untied(all)
	if len(untied) == 0 {
		return end, nil
	}
	var settle []string
	taken := map[string]bool{}
	k := i
	for ; k < end; k++ {
		var mine []string
		for _, path := range settleOf(ops[k]) {
			if untied[path] && !taken[path] {
				taken[path] = true
				mine = append(mine, path)
			}
		}
		if k > i && k+1-i+len(settle)+len(mine) > peer.MaxBatch {
			break
		}
		settle = append(settle, mine...)
	}
	return k, settle[:min(len(settle), peer.MaxBatch-(k-i))]
}

// settleOf returns the paths whose times op, a change written behind,
// moved here: its directory, and a rename's new directory and name, a
// mkdir's new directory.
func settleOf(op *nsOp) []string {
	switch op.Op {
	case cache.OpRename:
		return []string{parent(op.Path), parent(op.To), op.To}
	case cache.OpMkdir:
		return []string{parent(op.Path), op.Path}
	}
	return []string{parent(op.Path)}
}

// renamedAlready reports whether the peer shows rename op done: its old
// name gone, its new name there. An error is a failure to ask.
func (s *Store) renamedAlready(ctx context.Context, p *peerConn, op *nsOp) (bool, error) {
	res, err := s.peerStats(ctx, p, op.Path, op.To)
	if err != nil {
		return false, err
	}
	// The file at the new name must be the one moved: its version (a
	// peer keeps it across its own RENAME), not whatever was there.
	return len(res) == 2 && errors.Is(res[0].Err, fs.ErrNotExist) && res[1].Err == nil &&
		op.Version != "" && string(res[1].Entry.Version()) == op.Version, nil
}

// netErrOrNil is netErr, keeping nil.
func netErrOrNil(p *peerConn, err error) error {
	if err == nil {
		return nil
	}
	return netErr(p, err)
}

// forMkdirIn reports whether op is a directory's setattr for a directory
// one of batch makes: it goes after that MKDIR's answer, so that if the
// MKDIR is refused (another writer's file holds the name) it is checked
// before it goes (behind.finished marks it, giveUp checks it) instead of
// changing that file.
func forMkdirIn(batch []*nsOp, op *nsOp) bool {
	if !op.Dir {
		return false
	}
	for _, b := range batch {
		if b.Op == cache.OpMkdir && b.Path == op.Path {
			return true
		}
	}
	return false
}

// giveUp reports whether op must not be carried out: it was made for
// another export than the one answering at the peer's name, or (replayed
// after a restart) its file is no longer the version removed, or its
// path cannot lead to a file any more, or a directory's setattr
// finds no directory at its name. Those are logged. An error is a
// failure to ask the peer (or a refusal that may pass): asked again.
func (s *Store) giveUp(ctx context.Context, p *peerConn, op *nsOp) (bool, error) {
	if op.Owner != "" && p.link.peerID() != "" && op.Owner != s.owner(p) {
		s.log.Warn().Str("peer", p.name).Str("path", op.Path).Str("op", op.Op).Msg("not carried out: another export now answers at this peer's name")
		return true, nil
	}
	if !op.replayed || op.Op == cache.OpRmdir || op.Version == "" && !op.Dir {
		return false, nil
	}
	// The file, and for a rename its target too: one round trip.
	paths := []string{op.Path}
	if op.Op == cache.OpRename && op.ToVersion != "" {
		paths = append(paths, op.To)
	}
	res, err := s.peerStats(ctx, p, paths...)
	switch {
	case err != nil:
		return false, err
	case errors.Is(res[0].Err, fs.ErrNotExist):
		return true, nil
	case cannotHold(res[0].Err):
		// The path runs through a file or a symbolic link now: nothing
		// there is the version changed here, and asking again gets the
		// same answer (while everything queued behind, and every fsync,
		// waits).
		s.log.Warn().Err(res[0].Err).Str("peer", p.name).Str("path", op.Path).Str("op", op.Op).Msg("not carried out: its peer refuses to say what the file is now, after an earlier run removed, renamed or changed it here")
		return true, nil
	case res[0].Err != nil:
		return false, netErr(p, res[0].Err)
	case op.Dir && !res[0].Entry.IsDir():
		s.log.Warn().Str("peer", p.name).Str("path", op.Path).Msg("not carried out: a directory's mode or times, changed here by an earlier run, but its name holds a file on the peer now")
		return true, nil
	case op.Dir:
		return false, nil
	case string(res[0].Entry.Version()) != op.Version:
		s.log.Warn().Str("peer", p.name).Str("path", op.Path).Str("op", op.Op).Msg("not carried out: the file changed on its peer after an earlier run removed, renamed or changed it here")
		return true, nil
	case len(res) < 2 || errors.Is(res[1].Err, fs.ErrNotExist):
		return false, nil
	case cannotHold(res[1].Err):
		s.log.Warn().Err(res[1].Err).Str("peer", p.name).Str("path", op.To).Str("from", op.Path).Msg("rename not carried out: its peer refuses to say what its target is now, after an earlier run renamed over it here")
		return true, nil
	case res[1].Err != nil:
		return false, netErr(p, res[1].Err)
	case string(res[1].Entry.Version()) != op.ToVersion:
		// Nor does a replayed rename replace a version of its target
		// this mount never saw.
		s.log.Warn().Str("peer", p.name).Str("path", op.To).Str("from", op.Path).Msg("rename not carried out: its target changed on its peer after an earlier run renamed over it here")
		return true, nil
	}
	return false, nil
}

// cannotHold reports whether err, a peer's refusal of a STAT, says the
// path cannot lead to a file (an element of it is a file, or a symbolic
// link, which the peer does not follow): for a replayed change, as good
// as gone. A refusal to look (denied: a directory's mode, which its
// owner may change back) is not: the change waits for it.
func cannotHold(err error) bool {
	code := peerproto.CodeOf(err)
	return code == peerproto.CodeNotDir || code == peerproto.CodeLoop
}

// peerStats STATs paths on p in one round trip (behind a PING), for
// what only the peer can say now: no cache answers. An error is a
// failure to ask; each path's own outcome is in its result.
func (s *Store) peerStats(ctx context.Context, p *peerConn, paths ...string) ([]peer.StatResult, error) {
	var res []peer.StatResult
	err := s.poolDo(ctx, p, "STAT", func(c *peer.Conn) error {
		var err error
		_, res, err = c.WithStats(ctx, peerproto.Ping{}, paths...)
		return err
	})
	if err != nil {
		return nil, netErr(p, err)
	}
	return res, nil
}

// finishBatch records the outcome of a batch (behind.finished) and brings
// back, in the caches and the kernel's, what the peer refused to remove.
func (s *Store) finishBatch(p *peerConn, ops []*nsOp, outs []error, err error) {
	// Before a waiter wakes (finished): marked for FSYNC, so that the
	// FlushAll it returns to finds them; and what this mount showed of a
	// change not carried out forgotten, so that it then asks the peer.
	for i, out := range outs {
		switch op := ops[i]; {
		case out == nil && op.Op == cache.OpRename:
			// Durable at the next FSYNC, as after a synchronous
			// rename (Rename).
			p.unsynced.moved(op.Path, op.To)
		case out == nil && (op.Op == cache.OpMkdir || op.Op == cache.OpSetattr):
			// The attributes shown stay until they expire: dropped
			// now, the next Stat would wait for the queue behind it
			// (a program making directory after directory), for a
			// directory's inode number and exact times.
			p.unsynced.mark(op.Path)
		case out == nil:
			p.unsynced.mark(parent(op.Path))
		default:
			// The parents' too: a link count and times moved here
			// for a change that did not happen.
			p.attrs.forgetTree(op.Path)
			p.attrs.changed(parent(op.Path))
			if op.Op == cache.OpRename {
				p.attrs.forgetTree(op.To)
				p.attrs.changed(parent(op.To))
			}
		}
	}
	s.ns.finished(p.name, ops, outs, err)
	// The kernel's entries after the names show again (finished): a
	// lookup it makes at once must not find them hidden.
	for i, out := range outs {
		op := ops[i]
		switch {
		case out == nil:
			continue
		case !errors.Is(out, errGivenUp):
			s.log.Warn().Err(out).Str("peer", p.name).Str("path", op.Path).Str("op", op.Op).Msg("a change written behind was refused; the names are as the peer has them")
		}
		s.notify(p.name, parent(op.Path))
		if op.Op == cache.OpRename {
			s.notify(p.name, parent(op.To))
		}
	}
}

// writeBehind reports whether the removal of path on p (a directory if
// dir) may be written behind: the mount allows it, the peer answers and
// refused none lately, nothing of path is local here (a copy, an open
// handle) and a file has one name only (its other names' link counts
// change with it).
func (s *Store) writeBehind(p *peerConn, key cache.Key, f *fileState, dir bool) bool {
	if s.opts.SyncNamespace || f != nil || !p.link.answering() || !s.ns.allowed(p.name) {
		return false
	}
	if feats, ok := p.link.features(); !ok || feats.readOnly || len(key.Path) > peerproto.MaxName {
		// It would refuse (read-only; a path longer than any peer
		// takes): the program hears it at once.
		return false
	}
	if !dir && p.attrs.linked(key.Path) != 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.handles {
		if h.key == key {
			return false
		}
	}
	return true
}

// drainBehind waits until every peer's queue is carried out (behind.wait)
// and returns the first failure to reach a peer. Refusals are reported by
// Sync (refusals).
//
// A peer the tracker does not list now, or that this mount no longer
// knows, keeps its queue for its return; its failure is logged, not
// returned, as fsyncPeers does: a peer gone for days must not fail every
// fsync of the mount.
func (s *Store) drainBehind(ctx context.Context) error {
	var first error
	for _, name := range s.ns.peersPending() {
		s.mu.Lock()
		_, known := s.peers[name]
		_, unlisted := s.unlisted[name]
		s.mu.Unlock()
		if !known {
			continue
		}
		err := s.ns.wait(ctx, name)
		switch {
		case err == nil:
		case unlisted:
			s.log.Warn().Err(err).Str("peer", name).Int("pending", s.ns.pendingFor(name)).Msg("removals written behind wait for a peer the tracker no longer lists")
		case first == nil:
			first = err
		}
	}
	return first
}

// refusals returns (and forgets) the refusals of changes written behind
// not reported yet, for a program's fsync (Sync): a SYNC turn that no
// program waits on must not swallow them.
func (s *Store) refusals() error {
	if refused := s.ns.takeRefused(); len(refused) > 0 {
		return errors.Join(refused...)
	}
	return nil
}

// waitBehind is poolDo's barrier: a request that changes p's export waits
// for the removals queued before it, unless it is the queue's own; then
// the hiding of those carried out is dropped (behind.settle).
//
// A request that only reads waits too while a rename is queued (moving):
// until it is carried out, the peer has the old file at the new name.
func (s *Store) waitBehind(ctx context.Context, p *peerConn, mutating bool) error {
	if ctx.Value(senderKey{}) != nil || (!mutating && !s.ns.moving(p.name)) {
		return nil
	}
	if err := s.ns.wait(ctx, p.name); err != nil {
		return err
	}
	if mutating {
		for _, path := range s.ns.settle(p.name) {
			p.attrs.forget(path)
		}
	}
	return nil
}

// notEmptyOnPeer is Rmdir's refusal of a directory that holds entries
// this mount has not removed.
func notEmptyOnPeer(peerName, path string) error {
	return fmt.Errorf("remote: rmdir %s:%s: %w", peerName, path, fusefs.ErrNotEmpty)
}
