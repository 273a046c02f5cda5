package export

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/rs/zerolog"
)

// conn is one client connection. It is used by its own goroutine only.
type conn struct {
	s   *Server
	nc  net.Conn
	rd  *deadlineReader // under r; its timeout is switched between idle and I/O
	r   *bufio.Reader   // request lines and PUT payloads, both from this one reader
	w   *bufio.Writer   // replies; flushed at the end of each
	log zerolog.Logger

	// rate cuts a transfer below the minimum rate, while one runs; rd
	// and w's writer use it.
	rate minRate
	// attrs: the client asked for attribute words ("FEATURES attrs"):
	// entries and PUT DONE carry version tokens.
	attrs bool
	// posix: the client asked for whole-filesystem mode ("FEATURES
	// posix", which turns on attrs too): paths resolve through the jail's
	// Strict view, every kind of entry is listed with all its attributes.
	posix bool

	result string // outcome of the current request, for the debug log
	bytes  int64  // payload bytes moved by the current request
	// stale lists the paths the current request may change, dropped
	// from the server's open-file cache right before its reply, after
	// the change (staleAfter).
	stale []string
	// fenced: the current request holds Server.patchMu to read, until
	// its reply is about to go out (unfence): never across network I/O.
	fenced bool
}

// unfence releases the current request's hold of Server.patchMu, if any.
func (c *conn) unfence() {
	if c.fenced {
		c.fenced = false
		c.s.patchMu.RUnlock()
	}
}

// jail returns the jail as this connection resolves paths in it: the
// Strict view on a posix connection.
func (c *conn) jail() *jail.Jail {
	if c.posix {
		return c.s.jail.Strict()
	}
	return c.s.jail
}

// staleAfter notes that the current request may change p: its cached
// descriptors are dropped after the change and before the reply, so that
// a GET sent after the reply, on any connection, reads the new state.
func (c *conn) staleAfter(p string) {
	c.stale = append(c.stale, p)
}

// dropStale drops what the current request noted with staleAfter.
func (c *conn) dropStale() {
	for _, p := range c.stale {
		c.s.files.invalidate(p)
	}
	c.stale = c.stale[:0]
}

// serve greets the client and answers its requests until it leaves, the
// connection breaks or a request leaves it out of step. A nil error means
// the client ended the session (EOF or QUIT).
func (c *conn) serve() error {
	if err := c.send(peerproto.ConnectOK{}); err != nil {
		return err
	}
	for {
		// Between requests a connection may idle (a pool keeps it); once
		// a request line starts, all of it must arrive within
		// HeaderTimeout, one deadline for the whole line rather than one
		// per read, so a client trickling a byte now and then is cut.
		c.rd.timeout = 0
		if err := c.nc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout)); err != nil {
			return err
		}
		if _, err := c.r.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(c.s.opts.HeaderTimeout)); err != nil {
			return err
		}
		line, err := peerproto.ReadLine(c.r)
		if err != nil {
			if errors.Is(err, peerproto.ErrLineTooLong) {
				c.log.Warn().Int("limit", peerproto.MaxLine).Msg("request line too long; closing")
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c.rd.timeout = c.s.opts.IOTimeout
		if len(strings.TrimSpace(string(line))) == 0 {
			// A person pressing Enter in nc: nothing to answer.
			continue
		}
		msg, err := peerproto.ParsePeerRequest(line)
		if err != nil {
			if err := c.malformed(line, err); err != nil {
				return err
			}
			continue
		}
		if _, ok := msg.(peerproto.Quit); ok {
			c.log.Debug().Str("verb", peerproto.VerbQuit).Msg("request")
			return nil
		}
		// line points into c.r's buffer, which the request may reuse.
		req := shortLine(line)
		start := time.Now()
		c.result, c.bytes = "", 0
		err = c.dispatch(msg)
		if errors.Is(err, errSessionEnd) {
			c.log.Debug().Str("verb", msg.Verb()).Dur("took", time.Since(start)).Msg("event connection ended")
			return nil
		}
		c.log.Debug().Err(err).Str("verb", msg.Verb()).Str("request", req).Str("result", c.result).
			Int64("bytes", c.bytes).Dur("took", time.Since(start)).Msg("request")
		if err != nil {
			return err
		}
	}
}

// errSessionEnd is dispatch's error when the session ended well within
// the request (an event connection that ran until the client left).
var errSessionEnd = errors.New("session ended")

// dispatch answers one request. It returns an error only when the
// connection must close; refusals are answers.
func (c *conn) dispatch(msg peerproto.Message) error {
	switch msg.(type) {
	case peerproto.Delete, peerproto.Rename, peerproto.Setattr, peerproto.Link:
		// Not while a change in place runs (Server.patchMu); released
		// before the reply is written (send, refuse), so a client that
		// stopped reading holds no one up.
		c.s.patchMu.RLock()
		c.fenced = true
		defer c.unfence()
	}
	switch m := msg.(type) {
	case peerproto.Put:
		if m.Stream {
			return c.putStream(m)
		}
		return c.put(m)
	case peerproto.Get:
		return c.get(m)
	case peerproto.List:
		return c.list(m)
	case peerproto.Stat:
		return c.stat(m)
	case peerproto.Delete:
		return c.delete(m)
	case peerproto.Rename:
		return c.rename(m)
	case peerproto.Mkdir:
		return c.mkdir(m)
	case peerproto.Rmdir:
		return c.rmdir(m)
	case peerproto.Setattr:
		return c.setattr(m)
	case peerproto.Statfs:
		return c.statfs()
	case peerproto.Fsync:
		return c.fsync(m)
	case peerproto.Symlink:
		return c.symlink(m)
	case peerproto.Readlink:
		return c.readlink(m)
	case peerproto.Sum:
		return c.sum(m)
	case peerproto.Link:
		return c.link(m)
	case peerproto.Mknod:
		return c.mknod(m)
	case peerproto.Features:
		return c.features(m)
	case peerproto.Ping:
		return c.send(peerproto.Pong{})
	case peerproto.Watch:
		w, err := c.startEvents()
		if w == nil {
			return err // refused: the connection goes on as it was
		}
		if err := c.serveEvents(w, m); err != nil {
			return err
		}
		return errSessionEnd
	}
	return c.refuse(msg.Verb(), peerproto.Fail(msg.Verb(), peerproto.CodeUnsupported, "verb not served by this peer"))
}

// features answers FEATURES with every extension this peer serves, and
// turns on those the client names that change the replies (attrs, posix).
func (c *conn) features(m peerproto.Features) error {
	for _, w := range m.Words {
		switch w {
		case peerproto.FeatureAttrs:
			c.attrs = true
		case peerproto.FeaturePosix:
			c.attrs, c.posix = true, true
		}
	}
	ok := peerproto.FeaturesOK{Words: []string{peerproto.FeatureInline, peerproto.FeatureFsyncFiles, peerproto.FeatureAttrs, peerproto.FeaturePosix, peerproto.FeatureDelta, peerproto.FeatureStream, peerproto.FeatureSum}}
	if c.s.watchable {
		ok.Words = append(ok.Words, peerproto.FeatureWatch)
	}
	if c.s.opts.Owners {
		ok.Words = append(ok.Words, peerproto.FeatureOwners, peerproto.FeatureMkdirOwner)
		if c.s.keepsOwner() {
			ok.Words = append(ok.Words, peerproto.FeatureKeepOwner)
		}
	}
	if c.s.opts.AllowSetuid {
		ok.Words = append(ok.Words, peerproto.FeatureSetid)
	}
	if c.s.opts.AllowDevices {
		ok.Words = append(ok.Words, peerproto.FeatureDevices)
	}
	if c.s.opts.ReadOnly {
		ok.Words = append(ok.Words, peerproto.FeatureReadOnly)
	}
	if c.attrs {
		ok.ID = c.s.id
	}
	return c.send(ok)
}

// served reports whether verb is a request a peer serves, for telling an
// unknown verb from a malformed known one.
func served(verb string) bool {
	switch verb {
	case peerproto.VerbPut, peerproto.VerbGet, peerproto.VerbList,
		peerproto.VerbStat, peerproto.VerbDelete, peerproto.VerbRename,
		peerproto.VerbMkdir, peerproto.VerbRmdir, peerproto.VerbSetattr,
		peerproto.VerbStatfs, peerproto.VerbPing, peerproto.VerbQuit,
		peerproto.VerbFsync, peerproto.VerbFeatures, peerproto.VerbSymlink,
		peerproto.VerbReadlink, peerproto.VerbLink, peerproto.VerbMknod:
		return true
	}
	return false
}

// malformed answers a line that does not parse with
// "<FIRST WORD> FAIL invalid <detail>", or "unsupported" for an unknown
// verb, and keeps the connection.
func (c *conn) malformed(line []byte, err error) error {
	verb := replyVerb(line)
	code, text := peerproto.CodeInvalid, err.Error()
	var pe *peerproto.ProtocolError
	if errors.As(err, &pe) {
		text = pe.Msg
	}
	if errors.Is(err, peerproto.ErrPathTooLong) {
		code = peerproto.CodeNameTooLong // a name over MaxName
	}
	if !served(verb) {
		code = peerproto.CodeUnsupported
		text = fmt.Sprintf("unknown verb %q (want PUT, GET, LIST, STAT, DELETE, RENAME, MKDIR, RMDIR, SETATTR, STATFS, FSYNC, FEATURES, SYMLINK, READLINK, LINK, MKNOD, PING or QUIT)", verb)
	}
	c.log.Debug().Str("request", shortLine(line)).Str("result", code).Msg("malformed request")
	if err := c.refuse(verb, &peerproto.FailError{Verb: verb, Code: code, Text: text}); err != nil {
		return err
	}
	if verb == peerproto.VerbPut && hasWord(line, "inline") {
		// An inline payload of unknown size follows: no way to stay in step.
		return fmt.Errorf("peer: server: malformed inline PUT: %w", err)
	}
	return nil
}

// hasWord reports whether line has word, in any case, as one of its
// words.
func hasWord(line []byte, word string) bool {
	for _, w := range strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' || r == '\t' }) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// replyVerb returns the first word of line, uppercased and made safe to
// echo: printable ASCII only, at most 32 bytes.
func replyVerb(line []byte) string {
	word, _, _ := strings.Cut(strings.TrimLeft(string(line), " \t"), " ")
	word, _, _ = strings.Cut(word, "\t")
	if len(word) > 32 {
		word = word[:32]
	}
	word = strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f {
			return '?'
		}
		return r
	}, strings.ToUpper(word))
	return word
}

// shortLine returns a request line for the log, truncated.
func shortLine(line []byte) string {
	const max = 200
	if len(line) > max {
		return string(line[:max]) + "..."
	}
	return string(line)
}

// send writes one reply line and flushes it.
func (c *conn) send(m peerproto.Message) error {
	c.unfence()
	c.dropStale()
	if c.result == "" {
		c.result = "ok"
	}
	if err := peerproto.WriteMessage(c.w, m); err != nil {
		return err
	}
	return c.w.Flush()
}

// refuse answers the current request with "<verb> FAIL <code> <text>".
// err is a *peerproto.FailError, a *jail.Refusal or a filesystem error
// about name (which it then names in the text).
func (c *conn) refuse(verb string, err error, name ...string) error {
	c.unfence()
	c.dropStale()
	var fe *peerproto.FailError
	if !errors.As(err, &fe) {
		n := ""
		if len(name) > 0 {
			n = name[0]
		}
		code, text, hostile := jail.Explain(n, err)
		if hostile {
			c.log.Warn().Str("verb", verb).Str("name", n).Str("refused", text).Msg("refused a path that escapes the export")
		}
		fe = &peerproto.FailError{Verb: verb, Code: code, Text: text}
	}
	c.result = fe.Code
	if err := peerproto.WriteMessage(c.w, peerproto.Refusal{Err: fe}); err != nil {
		return err
	}
	return c.w.Flush()
}

// writable refuses the request if the export is read-only; ok says whether
// to go on.
func (c *conn) writable(verb string) (ok bool, err error) {
	if !c.s.opts.ReadOnly {
		return true, nil
	}
	return false, c.refuse(verb, peerproto.Fail(verb, peerproto.CodeReadOnly, "export is read-only"))
}

// writePath runs the checks every write request on one name starts with:
// the export takes writes, and name is a clean path inside it. refused
// reports that a refusal was sent (err is then the send's error).
func (c *conn) writePath(verb, name string) (p string, refused bool, err error) {
	if ok, err := c.writable(verb); !ok {
		return "", true, err
	}
	p, err = c.jail().Clean(name)
	if err != nil {
		return "", true, c.refuse(verb, err, name)
	}
	return p, false, nil
}
