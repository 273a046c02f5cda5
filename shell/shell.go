package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// Options configures Run. Zero values take the defaults noted.
type Options struct {
	In  io.Reader // commands, one a line
	Out io.Writer // outcomes and notices
	Err io.Writer // progress bars (only when TTY); nil: io.Discard

	// TTY turns on the "peerfs> " prompt and progress bars for transfers
	// over 4 MiB. Scripts and tests leave it false and get plain lines.
	TTY bool

	Name string // this peer's name, sent with REGISTER ("" for the bare seed form)
	Port int    // port this peer serves on, advertised with REGISTER

	// Client bounds connections to peers; Client.DialTimeout also bounds the
	// wait for REGISTER OK (default 5s).
	Client peer.ClientOptions
	Logger zerolog.Logger

	// Tracker, if set (host:port), is registered with at start, as if the
	// user had typed register.
	Tracker string

	// SyncTimeout bounds the sync command: the wait for our turn plus the
	// turn itself (default 1m).
	SyncTimeout time.Duration

	// OnTurn, if set, runs during each of this peer's SYNC turns, before
	// SYNC FIN is sent: it makes the peer's pending writes durable (a
	// mount's dirty files, say). The shell's own put is durable when it
	// returns, so nil is right for a shell alone.
	OnTurn func(ctx context.Context) error
}

// prompt is shown before each command when Options.TTY is set.
const prompt = "peerfs> "

// maxCommandLine bounds one input line.
const maxCommandLine = 1 << 20

// shell is the state of one Run.
type shell struct {
	opts Options
	log  zerolog.Logger
	ctx  context.Context
	errw io.Writer // opts.Err, writes serialised with outMu

	commands map[string]*command // by command word and alias; read-only
	order    []string            // first command words, in help's order; read-only

	// Owned by the command loop: touched by no other goroutine.
	conns   map[int]*peer.Conn
	dropped map[int]string // id -> why the connection was dropped
	nextID  int
	trk     *trackerRun // current registration, nil if none

	outMu     sync.Mutex // serialises writes to Out and Err; protects the fields below
	prompting bool       // a prompt is showing, waiting for input
	dirty     bool       // the terminal's current line holds a prompt or a bar
}

// Run reads commands from opts.In line by line and carries them out until
// the user types quit or exit, the input ends, or ctx is done. It closes
// every connection it opened and stops its tracker client before
// returning. It returns nil after quit or end of input, ctx.Err() if ctx
// ended the session, or the error that stopped reading opts.In.
//
// If ctx ends first, the goroutine reading opts.In returns when its current
// read does (at the next line, end of input or error): close opts.In to
// release it at once.
func Run(ctx context.Context, opts Options) error {
	if opts.In == nil {
		opts.In = strings.NewReader("")
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Err == nil {
		opts.Err = io.Discard
	}
	if opts.Client.DialTimeout <= 0 {
		opts.Client.DialTimeout = 5 * time.Second
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = time.Minute
	}
	s := &shell{
		opts:    opts,
		log:     opts.Logger.With().Str("component", "shell").Logger(),
		ctx:     ctx,
		conns:   make(map[int]*peer.Conn),
		dropped: make(map[int]string),
		nextID:  1,
	}
	s.errw = &lockedWriter{s: s, w: opts.Err}
	s.commands, s.order = commandTable()
	defer s.closeAll()

	if opts.Tracker != "" {
		s.register(opts.Tracker)
	}

	lines := make(chan string)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go readLines(opts.In, lines, readErr, stop)

	for {
		s.showPrompt()
		select {
		case <-ctx.Done():
			s.endLine()
			return ctx.Err()
		case line, ok := <-lines:
			if !ok {
				s.endLine()
				if err := <-readErr; err != nil {
					return fmt.Errorf("shell: read commands: %w", err)
				}
				return nil
			}
			s.mu(func() { s.prompting, s.dirty = false, false })
			if quit := s.execute(line); quit {
				return nil
			}
		}
	}
}

// readLines sends each line of in to lines until in ends or stop is
// closed, then reports the read error (nil at end of input) and closes
// lines.
func readLines(in io.Reader, lines chan<- string, readErr chan<- error, stop <-chan struct{}) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), maxCommandLine)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		case <-stop:
			return
		}
	}
	readErr <- sc.Err()
	close(lines)
}

// execute runs one command line and reports whether the shell should end.
func (s *shell) execute(line string) (quit bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return false
	}
	args, err := splitArgs(line)
	if err != nil {
		s.println("FAIL " + err.Error())
		return false
	}
	name := strings.ToLower(args[0])
	cmd, ok := s.commands[name]
	if !ok {
		s.printf("FAIL unknown command %q; type help", args[0])
		return false
	}
	args = args[1:]
	if len(args) < cmd.minArgs || len(args) > cmd.maxArgs {
		s.usage(cmd)
		return false
	}
	s.log.Debug().Str("command", name).Strs("args", args).Msg("command")
	return cmd.run(s, args)
}

// closeAll closes every connection and stops the tracker client.
func (s *shell) closeAll() {
	for id, c := range s.conns {
		c.Close()
		delete(s.conns, id)
	}
	s.stopTracker()
}

// mu runs fn with outMu held.
func (s *shell) mu(fn func()) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fn()
}

// write writes text (whole lines) to Out in one piece.
func (s *shell) write(text string) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = io.WriteString(s.opts.Out, text)
}

// println writes one line.
func (s *shell) println(line string) { s.write(line + "\n") }

// printf writes one formatted line.
func (s *shell) printf(format string, args ...any) { s.println(fmt.Sprintf(format, args...)) }

// notice prints an asynchronous event as a line starting with "* ". On a
// terminal it first clears a prompt or progress bar from the current line
// and shows the prompt again afterwards, so the event reads cleanly.
func (s *shell) notice(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	var b strings.Builder
	if s.opts.TTY && s.dirty {
		b.WriteString("\r\033[K")
	}
	b.WriteString("* ")
	fmt.Fprintf(&b, format, args...)
	b.WriteByte('\n')
	s.dirty = false
	if s.opts.TTY && s.prompting {
		b.WriteString(prompt)
		s.dirty = true
	}
	_, _ = io.WriteString(s.opts.Out, b.String())
}

// showPrompt shows the prompt on a terminal.
func (s *shell) showPrompt() {
	if !s.opts.TTY {
		return
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = io.WriteString(s.opts.Out, prompt)
	s.prompting, s.dirty = true, true
}

// endLine ends a prompt line left open when input ends, so the caller's
// next output starts on a fresh line.
func (s *shell) endLine() {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.opts.TTY && s.prompting {
		_, _ = io.WriteString(s.opts.Out, "\n")
	}
	s.prompting, s.dirty = false, false
}

// lockedWriter serialises the progress bar's writes with the shell's other
// output and records that the bar left the line unfinished.
type lockedWriter struct {
	s *shell
	w io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.s.outMu.Lock()
	defer l.s.outMu.Unlock()
	if len(p) > 0 {
		l.s.dirty = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}

// reason renders err for a FAIL line: a peer's or tracker's refusal as its
// code and text (the words it sent after "FAIL"), anything else as is.
func reason(err error) string {
	var fe *peerproto.FailError
	if errors.As(err, &fe) {
		if fe.Text == "" {
			return fe.Code
		}
		return fe.Code + " " + fe.Text
	}
	return err.Error()
}

// splitArgs splits a command line into words at blanks. A word may be
// quoted with "..." (backslash escapes the next character) or '...'
// (literal), and a backslash outside quotes escapes the next character, so
// names with spaces can be typed.
func splitArgs(line string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote byte // the open quote character, or 0
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\\':
			if i+1 == len(line) {
				return nil, errors.New("backslash at end of line")
			}
			i++
			cur.WriteByte(line[i])
			inArg = true
		case quote == '"':
			if c == '"' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
			inArg = true
		case c == ' ' || c == '\t':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}
