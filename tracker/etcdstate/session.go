package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/peerfs/peerfs/tracker"
)

// session is one replica's tracker.SharedSession.
type session struct {
	s    *Store
	sess *concurrency.Session
	id   string
}

// ID is the session's lease, in hexadecimal.
func (x *session) ID() string { return x.id }

// Done is closed when the lease is lost or no longer kept alive.
func (x *session) Done() <-chan struct{} { return x.sess.Done() }

func (x *session) lease() clientv3.LeaseID { return x.sess.Lease() }

// Close stops keeping the lease alive without revoking it: the members
// stay until the TTL runs out, so that peers that register again with
// another replica in time replace them without leaving the list.
func (x *session) Close() error {
	x.sess.Orphan()
	return nil
}

// Follow reads everything under the prefix, then watches it from the
// next revision.
func (x *session) Follow(ctx context.Context, fn func(tracker.SharedEvent)) error {
	s := x.s
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcdstate: read %s: %w", s.prefix, err)
	}
	snap := tracker.SharedEvent{Snapshot: true, Rev: resp.Header.Revision}
	type created struct {
		m   tracker.Member
		rev int64
	}
	var ms []created
	for _, kv := range resp.Kvs {
		switch key := string(kv.Key); {
		case strings.HasPrefix(key, s.membersPrefix()):
			var m tracker.Member
			if json.Unmarshal(kv.Value, &m) == nil {
				ms = append(ms, created{m, kv.CreateRevision})
			}
		case key == s.roundKey():
			_ = json.Unmarshal(kv.Value, &snap.Round)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].rev < ms[j].rev })
	for _, c := range ms {
		snap.Members = append(snap.Members, c.m)
	}
	fn(snap)

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithPrevKV())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("etcdstate: watch %s: %w", s.prefix, err)
		}
		for _, ev := range wr.Events {
			if e, ok := x.event(ev); ok {
				fn(e)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("etcdstate: the watch ended")
}

// event turns a watch event into a SharedEvent, if it is one.
func (x *session) event(ev *clientv3.Event) (tracker.SharedEvent, bool) {
	s := x.s
	key := string(ev.Kv.Key)
	e := tracker.SharedEvent{Rev: ev.Kv.ModRevision}
	switch {
	case strings.HasPrefix(key, s.membersPrefix()):
		var m tracker.Member
		if ev.Type == clientv3.EventTypeDelete {
			if ev.PrevKv == nil || json.Unmarshal(ev.PrevKv.Value, &m) != nil {
				m = tracker.Member{Name: strings.TrimPrefix(key, s.membersPrefix())}
			}
			e.Deleted = true
		} else if json.Unmarshal(ev.Kv.Value, &m) != nil {
			return e, false
		}
		e.Member = &m
		e.Created = ev.IsCreate()
		return e, true
	case key == s.roundKey() && ev.Type == clientv3.EventTypePut:
		if json.Unmarshal(ev.Kv.Value, &e.Round) != nil {
			return e, false
		}
		e.RoundChanged = true
		return e, true
	}
	return e, false
}

// Join creates the member, or replaces one of the same name at the same
// address stored before the call (the peer restarted). One stored since
// is another registration of the same peer (with another replica, while
// an answer here was lost): it stays, and Join fails with a TakenError.
// A try whose answer was lost left the member stored: the next finds it
// by its Owner.
func (x *session) Join(ctx context.Context, m tracker.Member) (rev int64, err error) {
	resp, err := x.s.cli.Get(ctx, x.s.memberKey(m.Name)) // (reads are retried by etcd's client)
	if err != nil {
		return 0, fmt.Errorf("etcdstate: join %s: %w", m.Name, err)
	}
	before := resp.Header.Revision
	err = x.retry(ctx, func() error {
		rev, err = x.join(ctx, m, before)
		return err
	})
	return rev, err
}

// join is one try of Join; a member at m's address stored after
// revision before is not replaced.
func (x *session) join(ctx context.Context, m tracker.Member, before int64) (int64, error) {
	s := x.s
	key := s.memberKey(m.Name)
	val, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	for {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(x.lease()))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcdstate: join %s: %w", m.Name, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // gone meanwhile
		}
		var old tracker.Member
		if json.Unmarshal(kvs[0].Value, &old) != nil {
			return 0, &tracker.TakenError{}
		}
		if m.Owner != "" && old.Owner == m.Owner {
			return kvs[0].ModRevision, nil // an earlier try's, its answer lost
		}
		if old.Addr != m.Addr || m.Addr == "" || kvs[0].ModRevision > before {
			return 0, &tracker.TakenError{Addr: old.Addr}
		}
		// The same peer, restarted: it takes its place.
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(x.lease()))).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcdstate: join %s: %w", m.Name, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
	}
}

// ifOwned applies op to member old.Name's key if the registration
// stored there is still old's (the same Owner), whatever else changed
// in it: a replica's record of its member may lag the store's (an
// update whose answer was lost), but the registration is the same. It
// returns the revision op was applied at, or 0 if the registration is
// not old's any more (replaced or gone).
func (x *session) ifOwned(ctx context.Context, old tracker.Member, op func(stored tracker.Member) (clientv3.Op, error)) (int64, error) {
	s := x.s
	key := s.memberKey(old.Name)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		if len(resp.Kvs) == 0 {
			return 0, nil
		}
		var stored tracker.Member
		if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil || stored.Owner != old.Owner {
			return 0, nil
		}
		o, err := op(stored)
		if err != nil {
			return 0, err
		}
		txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).Then(o).Commit()
		if err != nil {
			return 0, err
		}
		if txn.Succeeded {
			return txn.Header.Revision, nil
		}
		// Changed meanwhile: look again.
	}
}

// Update replaces member old with m, if old's registration is still
// the one stored.
func (x *session) Update(ctx context.Context, old, m tracker.Member) error {
	val, err := json.Marshal(m)
	if err != nil {
		return err
	}
	err = x.retry(ctx, func() error {
		_, err := x.ifOwned(ctx, old, func(tracker.Member) (clientv3.Op, error) {
			return clientv3.OpPut(x.s.memberKey(m.Name), string(val), clientv3.WithLease(x.lease())), nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("etcdstate: update %s: %w", m.Name, err)
	}
	return nil
}

// Leave deletes member m, if m's registration is still the one stored;
// quit first marks it as having quit, which the deletion's watchers read.
func (x *session) Leave(ctx context.Context, m tracker.Member, quit bool) error {
	key := x.s.memberKey(m.Name)
	if quit {
		err := x.retry(ctx, func() error {
			_, err := x.ifOwned(ctx, m, func(stored tracker.Member) (clientv3.Op, error) {
				stored.Left = "quit"
				val, err := json.Marshal(stored)
				return clientv3.OpPut(key, string(val), clientv3.WithLease(x.lease())), err
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("etcdstate: leave %s: %w", m.Name, err)
		}
	}
	err := x.retry(ctx, func() error {
		_, err := x.ifOwned(ctx, m, func(tracker.Member) (clientv3.Op, error) { return clientv3.OpDelete(key), nil })
		return err
	})
	if err != nil {
		return fmt.Errorf("etcdstate: leave %s: %w", m.Name, err)
	}
	return nil
}

// UpdateRound is a compare-and-swap loop on the round's key.
func (x *session) UpdateRound(ctx context.Context, guard int64, fn func(*tracker.RoundState) bool) (tracker.RoundState, error) {
	return x.updateRound(ctx, guard, nil, fn)
}

// updateRound runs the compare-and-swap with the conditions extra too;
// if they fail, it returns tracker.ErrTokenLost. A try whose answer was
// lost is carried out already: the next runs fn on the state it stored,
// or a later one, as the compare-and-swap does when another writer came
// first (tracker.SharedSession.UpdateRound: fn must tell).
func (x *session) updateRound(ctx context.Context, guard int64, extra []clientv3.Cmp, fn func(*tracker.RoundState) bool) (rs tracker.RoundState, err error) {
	err = x.retry(ctx, func() error {
		rs, err = x.casRound(ctx, guard, extra, fn)
		return err
	})
	return rs, err
}

// casRound is one try of updateRound.
func (x *session) casRound(ctx context.Context, guard int64, extra []clientv3.Cmp, fn func(*tracker.RoundState) bool) (tracker.RoundState, error) {
	s := x.s
	key := s.roundKey()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return tracker.RoundState{}, fmt.Errorf("etcdstate: read the round: %w", err)
	}
	for {
		var rs tracker.RoundState
		var modRev int64
		if len(resp.Kvs) > 0 {
			modRev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &rs); err != nil {
				return rs, fmt.Errorf("etcdstate: the round: %w", err)
			}
		}
		if !fn(&rs) {
			return rs, nil
		}
		val, err := json.Marshal(rs)
		if err != nil {
			return rs, err
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}, extra...)
		if guard > 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.membersPrefix()), "<", guard+1).WithPrefix())
		}
		txn, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val))).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return rs, fmt.Errorf("etcdstate: write the round: %w", err)
		}
		if txn.Succeeded {
			return rs, nil
		}
		next := txn.Responses[0].GetResponseRange()
		nextRev := int64(0)
		if len(next.Kvs) > 0 {
			nextRev = next.Kvs[0].ModRevision
		}
		if nextRev == modRev {
			// The round is as it was: another condition failed.
			if len(extra) > 0 {
				if ok, err := x.holds(ctx, extra); err != nil || !ok {
					return rs, errors.Join(tracker.ErrTokenLost, err)
				}
			}
			return rs, tracker.ErrStale
		}
		resp = &clientv3.GetResponse{Header: next.Header, Kvs: next.Kvs}
	}
}

// holds reports whether the conditions cmps hold now.
func (x *session) holds(ctx context.Context, cmps []clientv3.Cmp) (bool, error) {
	resp, err := x.s.cli.Txn(ctx).If(cmps...).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Lock takes the write token: the session's mutex.
func (x *session) Lock(ctx context.Context) (tracker.Token, error) {
	m := concurrency.NewMutex(x.sess, x.s.tokenPrefix())
	// A try whose answer was lost left the session's key: the next
	// finds it and waits on it.
	if err := x.retry(ctx, func() error { return m.Lock(ctx) }); err != nil {
		return nil, fmt.Errorf("etcdstate: take the write token: %w", err)
	}
	return &token{x: x, m: m}, nil
}

// token is a held write token.
type token struct {
	x *session
	m *concurrency.Mutex
}

// Round reads the round's key.
func (k *token) Round(ctx context.Context) (tracker.RoundState, error) {
	var rs tracker.RoundState
	resp, err := k.x.s.cli.Get(ctx, k.x.s.roundKey())
	if err != nil {
		return rs, fmt.Errorf("etcdstate: read the round: %w", err)
	}
	if len(resp.Kvs) > 0 {
		err = json.Unmarshal(resp.Kvs[0].Value, &rs)
	}
	return rs, err
}

// UpdateRound updates the round only while the token's key is the one
// this session created when it took the token.
func (k *token) UpdateRound(ctx context.Context, guard int64, fn func(*tracker.RoundState) bool) (tracker.RoundState, error) {
	return k.x.updateRound(ctx, guard, []clientv3.Cmp{k.m.IsOwner()}, fn)
}

// Unlock deletes this session's key under the token's prefix.
func (k *token) Unlock(ctx context.Context) error {
	if err := k.x.retry(ctx, func() error { return k.m.Unlock(ctx) }); err != nil {
		return fmt.Errorf("etcdstate: give the write token back: %w", err)
	}
	return nil
}
