package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/peerfs/peerfs/tracker"
)

// Defaults for the zero fields of Options.
const (
	DefaultPrefix      = "/peerfs/"
	DefaultTTL         = 10 * time.Second
	DefaultDialTimeout = 5 * time.Second
)

// Options configures a Store.
type Options struct {
	// Endpoints are the etcd members' client URLs (http://host:2379).
	Endpoints []string
	// Prefix is where the cluster's keys live; default DefaultPrefix.
	// Several peerfs clusters can share one etcd under other prefixes.
	Prefix string
	// TTL is a session's lease: how long a replica that stopped
	// answering keeps its members and the write token; default 10s,
	// at least 2s (etcd counts leases in seconds).
	TTL time.Duration
	// DialTimeout bounds connecting to etcd and granting a session's
	// lease; default 5s.
	DialTimeout time.Duration
}

// Store is tracker.Shared over etcd. Create one with New; Close it when
// its trackers are closed.
type Store struct {
	cli         *clientv3.Client
	prefix      string
	ttl         int           // seconds
	dialTimeout time.Duration // bounds the grant of a session's lease
}

var _ tracker.Shared = (*Store)(nil)

// New connects to etcd. It does not wait for etcd to answer: sessions
// do (Open).
func New(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstate: no etcd endpoints")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		// etcd's client logs with zap; ours says what matters.
		Logger: zap.NewNop(),
		// A member that stops answering is noticed, so the client moves
		// to another.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstate: %w", err)
	}
	return &Store{cli: cli, prefix: opts.Prefix, ttl: max(2, int(opts.TTL/time.Second)), dialTimeout: opts.DialTimeout}, nil
}

// Close closes the connection to etcd.
func (s *Store) Close() error { return s.cli.Close() }

// Open starts a session: a lease kept alive, to which its members and
// its token are attached. The lease is granted within the DialTimeout:
// an etcd that does not answer is an error, not a silent wait (the
// client waits for a reachable member otherwise).
func (s *Store) Open(ctx context.Context) (tracker.SharedSession, error) {
	gctx, cancel := context.WithTimeout(ctx, s.dialTimeout)
	lease, err := s.cli.Grant(gctx, int64(s.ttl))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcdstate: open a session: grant a lease: %w", err)
	}
	// The session's context is ctx: it keeps the lease alive until ctx
	// ends or the session is closed.
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("etcdstate: open a session: %w", err)
	}
	return &session{s: s, sess: sess, id: fmt.Sprintf("%x", int64(sess.Lease()))}, nil
}

func (s *Store) memberKey(name string) string { return s.prefix + "members/" + name }
func (s *Store) membersPrefix() string        { return s.prefix + "members/" }
func (s *Store) roundKey() string             { return s.prefix + "round" }
func (s *Store) tokenPrefix() string          { return s.prefix + "token" }
