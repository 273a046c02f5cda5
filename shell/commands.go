package shell

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// leaveWait bounds how long quit waits for the tracker to take the QUIT.
const leaveWait = 2 * time.Second

// command is one shell command.
type command struct {
	verb    string // word for outcome lines, e.g. "PUT"
	usage   string // argument synopsis
	help    string // one-line description
	minArgs int
	maxArgs int
	run     func(s *shell, args []string) (quit bool)
}

// commandTable returns the shell's commands: by command word (and
// alias), and their first words in the order help lists them.
func commandTable() (commands map[string]*command, order []string) {
	list := []struct {
		names []string
		cmd   command
	}{
		{[]string{"register"}, command{"REGISTER", "register <srv ip> <port>", "register with the tracker (replaces an earlier registration)", 2, 2, (*shell).cmdRegister}},
		{[]string{"peers"}, command{"PEERS", "peers", "show the peer list of the tracker's last UPDATE", 0, 0, (*shell).cmdPeers}},
		{[]string{"connect"}, command{"CONNECT", "connect <ip> <port>", "connect to a peer; prints the connection id", 2, 2, (*shell).cmdConnect}},
		{[]string{"conns"}, command{"CONNS", "conns", "list open connections", 0, 0, (*shell).cmdConns}},
		{[]string{"close"}, command{"CLOSE", "close <conn id>", "close a connection", 1, 1, (*shell).cmdClose}},
		{[]string{"put"}, command{"PUT", "put <conn id> <local file> [<remote name>]", "upload a file (remote name defaults to the file's base name)", 2, 3, (*shell).cmdPut}},
		{[]string{"get"}, command{"GET", "get <conn id> <remote name> [<local path>]", "download a file (local path defaults to its base name here)", 2, 3, (*shell).cmdGet}},
		{[]string{"ls"}, command{"LS", "ls <conn id> [<dir>]", "list a remote directory: type, size, name", 1, 2, (*shell).cmdLs}},
		{[]string{"rm"}, command{"RM", "rm <conn id> <name>", "remove a remote file or empty directory", 2, 2, (*shell).cmdRm}},
		{[]string{"mkdir"}, command{"MKDIR", "mkdir <conn id> <name>", "create a remote directory", 2, 2, (*shell).cmdMkdir}},
		{[]string{"mv"}, command{"MV", "mv <conn id> <from> <to>", "rename a remote file or directory", 3, 3, (*shell).cmdMv}},
		{[]string{"sync"}, command{"SYNC", "sync", "take the tracker's write token: SYNC OK when our turn comes, SYNC FIN when handed back", 0, 0, (*shell).cmdSync}},
		{[]string{"help", "?"}, command{"HELP", "help [<command>]", "show this help, or one command's", 0, 1, (*shell).cmdHelp}},
		{[]string{"quit", "exit"}, command{"QUIT", "quit | exit", "close connections, unregister and leave", 0, 0, (*shell).cmdQuit}},
	}
	commands = make(map[string]*command)
	for _, e := range list {
		c := e.cmd
		for _, n := range e.names {
			commands[n] = &c
		}
		order = append(order, e.names[0])
	}
	return commands, order
}

// usage prints a command's usage as its FAIL line.
func (s *shell) usage(c *command) {
	s.printf("%s FAIL usage: %s", c.verb, c.usage)
}

func (s *shell) cmdHelp(args []string) bool {
	if len(args) == 1 {
		if c, ok := s.commands[strings.ToLower(args[0])]; ok {
			s.printf("HELP OK\n  %s\n      %s", c.usage, c.help)
			return false
		}
	}
	var b strings.Builder
	b.WriteString("HELP OK commands:\n")
	for _, n := range s.order {
		c := s.commands[n]
		fmt.Fprintf(&b, "  %-44s %s\n", c.usage, c.help)
	}
	b.WriteString("  (quote names with spaces: put 1 \"my file.txt\")\n")
	s.write(b.String())
	return false
}

func (s *shell) cmdQuit([]string) bool {
	if s.trk != nil {
		// The user leaves on purpose: the tracker tells the others so
		// (QUIT), and their mounts drop this peer's folder. Ending the
		// input or a signal only stops the shell.
		ctx, cancel := context.WithTimeout(context.Background(), leaveWait)
		if err := s.trk.tc.Leave(ctx); err != nil && !errors.Is(err, tracker.ErrNotRegistered) {
			s.printf("QUIT: could not tell the tracker: %v", err)
		}
		cancel()
	}
	s.closeAll()
	s.println("QUIT OK")
	return true
}

// hostPort validates a "<ip> <port>" pair and joins it.
func hostPort(host, port string) (string, error) {
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("bad port %q: want 1-65535", port)
	}
	if host == "" {
		return "", errors.New("empty host")
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func (s *shell) cmdConnect(args []string) bool {
	addr, err := hostPort(args[0], args[1])
	if err != nil {
		s.printf("CONNECT FAIL %v; usage: %s", err, s.commands["connect"].usage)
		return false
	}
	c, err := peer.Dial(s.ctx, addr, s.opts.Client)
	if err != nil {
		s.println("CONNECT FAIL " + reason(err))
		return false
	}
	id := s.nextID
	s.nextID++
	s.conns[id] = c
	s.printf("CONNECT OK %d %s", id, addr)
	return false
}

func (s *shell) cmdConns([]string) bool {
	ids := make([]int, 0, len(s.conns))
	for id := range s.conns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "CONNS OK %d\n", len(ids))
	for _, id := range ids {
		fmt.Fprintf(&b, "  %d %s\n", id, s.conns[id].Addr())
	}
	s.write(b.String())
	return false
}

func (s *shell) cmdClose(args []string) bool {
	c, id, ok := s.conn("CLOSE", args[0])
	if !ok {
		return false
	}
	c.Close()
	delete(s.conns, id)
	s.printf("CLOSE OK %d %s", id, c.Addr())
	return false
}

// conn looks up the connection named by an id argument, printing the FAIL
// line for verb when there is none.
func (s *shell) conn(verb, arg string) (*peer.Conn, int, bool) {
	id, err := strconv.Atoi(arg)
	if err != nil {
		s.printf("%s FAIL bad connection id %q; see conns", verb, arg)
		return nil, 0, false
	}
	if c, ok := s.conns[id]; ok {
		return c, id, true
	}
	if why, ok := s.dropped[id]; ok {
		s.printf("%s FAIL connection %d was dropped: %s", verb, id, why)
		return nil, 0, false
	}
	s.printf("%s FAIL no connection %d; see conns", verb, id)
	return nil, 0, false
}

// failed prints the FAIL line for an operation on connection id, and drops
// the connection if the failure left it unusable (the peer died or the
// stream fell out of step), so later commands say so.
func (s *shell) failed(verb string, id int, c *peer.Conn, err error) {
	line := verb + " FAIL " + reason(err)
	if c.Broken() {
		c.Close()
		delete(s.conns, id)
		s.dropped[id] = reason(err)
		line += fmt.Sprintf(" (connection %d to %s dropped)", id, c.Addr())
	}
	s.println(line)
}

// remoteName turns a typed remote path into the protocol's canonical form:
// a leading "/" means the export root, "." and "" are the root itself.
func remoteName(typed string) (string, error) {
	name, err := peerproto.CleanPath(strings.TrimLeft(typed, "/"))
	if err != nil {
		return "", fmt.Errorf("bad remote name %s: %w", show(typed), err)
	}
	return name, nil
}

// show renders a name for output: as is when plain, quoted when it holds
// blanks, quotes or unprintable characters.
func show(name string) string {
	if name == "" {
		return `""`
	}
	plain := strings.IndexFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '"' || r == '\'' || r == '\\'
	}) < 0
	if plain {
		return name
	}
	return strconv.Quote(name)
}

func (s *shell) cmdLs(args []string) bool {
	c, id, ok := s.conn("LS", args[0])
	if !ok {
		return false
	}
	dir := ""
	if len(args) == 2 {
		var err error
		if dir, err = remoteName(args[1]); err != nil {
			s.println("LS FAIL " + err.Error())
			return false
		}
	}
	entries, err := c.List(s.ctx, dir)
	if err != nil {
		s.failed("LS", id, c, err)
		return false
	}
	slices.SortFunc(entries, func(a, b peerproto.Entry) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	fmt.Fprintf(&b, "LS OK %d entries in %s\n", len(entries), show("/"+dir))
	for _, e := range entries {
		fmt.Fprintf(&b, "  %c %12d %s\n", e.Type, e.Size, show(e.Name))
	}
	s.write(b.String())
	return false
}

func (s *shell) cmdRm(args []string) bool {
	c, id, ok := s.conn("RM", args[0])
	if !ok {
		return false
	}
	name, err := remoteName(args[1])
	if err == nil && name == "" {
		err = errors.New("will not remove the export root")
	}
	if err != nil {
		s.println("RM FAIL " + err.Error())
		return false
	}
	err = c.Delete(s.ctx, name)
	var fe *peerproto.FailError
	if errors.As(err, &fe) && fe.Code == peerproto.CodeIsDir {
		err = c.Rmdir(s.ctx, name)
	}
	if err != nil {
		s.failed("RM", id, c, err)
		return false
	}
	s.println("RM OK " + show(name))
	return false
}

func (s *shell) cmdMkdir(args []string) bool {
	c, id, ok := s.conn("MKDIR", args[0])
	if !ok {
		return false
	}
	name, err := remoteName(args[1])
	if err == nil && name == "" {
		err = errors.New("the export root exists already")
	}
	if err != nil {
		s.println("MKDIR FAIL " + err.Error())
		return false
	}
	if err := c.Mkdir(s.ctx, name, 0); err != nil {
		s.failed("MKDIR", id, c, err)
		return false
	}
	s.println("MKDIR OK " + show(name))
	return false
}

func (s *shell) cmdMv(args []string) bool {
	c, id, ok := s.conn("MV", args[0])
	if !ok {
		return false
	}
	from, err := remoteName(args[1])
	to, err2 := remoteName(args[2])
	if err == nil {
		err = err2
	}
	if err == nil && (from == "" || to == "") {
		err = errors.New("cannot move the export root")
	}
	if err != nil {
		s.println("MV FAIL " + err.Error())
		return false
	}
	if err := c.Rename(s.ctx, from, to); err != nil {
		s.failed("MV", id, c, err)
		return false
	}
	s.printf("MV OK %s %s", show(from), show(to))
	return false
}

// baseName is the last element of a canonical remote name.
func baseName(name string) string { return path.Base(name) }
