package secure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// MinSecretLen is the shortest cluster secret accepted, in bytes. A man in
// the middle gets one proof to attack offline, so the secret must not be
// guessable: 32 random bytes (hex or base64) are recommended.
const MinSecretLen = 16

const (
	// exporterLabel names the keying material the proofs are computed over.
	exporterLabel = "EXPORTER-peerfs-membership-v1"
	// proofPrefix starts the one proof line each side sends.
	proofPrefix = "PEERFS-AUTH1 "
	// maxProofLine bounds what is read while waiting for a proof line.
	maxProofLine = 512
	// plaintextWait is how long a server waits for a client's first byte
	// before concluding it waits for a plaintext greeting that will never
	// come. TLS clients speak first, at once.
	plaintextWait = 3 * time.Second
	// tlsHandshakeRecord is the first byte of every TLS ClientHello.
	tlsHandshakeRecord = 0x16
)

// Roles bound into the proofs, so that a server's proof is never a valid
// client proof for the same session (no reflection).
const (
	roleClient = 'C'
	roleServer = 'S'
)

var (
	// ErrNotMember means the other side did not prove it knows the cluster
	// secret: no proof, a wrong one, or one for another session.
	ErrNotMember = errors.New("not a member of this cluster")
	// ErrPlaintext means a server's client did not start a TLS handshake:
	// it speaks (or waits for) the plaintext protocol.
	ErrPlaintext = errors.New("plaintext connection to a TLS-only port")
)

// RefusedError is a server's refusal received by Client in place of the
// server's proof: the line the server sent (without its newline), e.g.
// "CONNECT FAIL denied not a member of this cluster". It matches
// ErrNotMember with errors.Is.
type RefusedError struct {
	Line string
}

func (e *RefusedError) Error() string { return "refused by the server: " + e.Line }

// Is makes a refusal match ErrNotMember.
func (e *RefusedError) Is(target error) bool { return target == ErrNotMember }

// Config holds the cluster key and this process's certificate. It is safe
// for concurrent use by any number of connections.
type Config struct {
	key    []byte // HMAC-SHA256 key: the cluster secret
	server *tls.Config
	client *tls.Config
}

// New returns a Config for the cluster secret and generates this process's
// ephemeral certificate. The secret must be at least MinSecretLen bytes.
func New(secret []byte) (*Config, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("secure: cluster secret is %d bytes, want at least %d (32 random bytes recommended)", len(secret), MinSecretLen)
	}
	cert, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("secure: certificate: %w", err)
	}
	c := &Config{key: bytes.Clone(secret)}
	c.server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// A certificate is required so that both ends are TLS peers, but it
		// is not trusted for anything: the membership proof authenticates.
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
	}
	c.client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ServerName:   "peerfs",
		// The certificate is ephemeral and self-signed: there is no chain
		// to verify. The HMAC over the exporter authenticates the server.
		InsecureSkipVerify: true, //nolint:gosec // see above
	}
	return c, nil
}

// ClusterID returns a name of the cluster derived from its secret (an
// HMAC of a fixed label, so it reveals nothing of the secret): two
// clusters with different secrets have different IDs. A mount binds the
// data it keeps for peers to it.
func (c *Config) ClusterID() string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("peerfs cluster id v1"))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// ReadSecretFile reads a cluster secret from path, trimming surrounding
// white space. It refuses a file that anyone but its owner may read or
// write (group or other permission bits set), as ssh does for private
// keys: a group is often wider than the people meant to hold the secret.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s: mode %04o lets other users (its group or everyone) read or write it; it must be readable by its owner only: chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	return bytes.TrimSpace(b), nil
}

// selfSigned makes an ECDSA P-256 certificate valid for a day around now.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "peerfs"},
		NotBefore:    now.Add(-time.Hour),
		// Never checked (no chain verification), but a sane value.
		NotAfter:    now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// proof returns the proof line of role for the session of tc.
func (c *Config) proof(tc *tls.Conn, role byte) ([]byte, error) {
	cs := tc.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte{role})
	m.Write(ekm)
	return m.Sum(nil), nil
}

// Server runs the server side on a freshly accepted conn: the TLS
// handshake, then the membership proofs, all within timeout. It returns
// the TLS connection, ready for the protocol, with no deadline set.
//
// When the client is refused it returns a connection as well as the error,
// so the caller can send its protocol's refusal before closing it (conn
// closes with it): with ErrNotMember the TLS connection, with ErrPlaintext
// conn itself. On any other error it returns nil; the caller closes conn.
func (c *Config) Server(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	if err := conn.SetReadDeadline(time.Now().Add(min(timeout, plaintextWait))); err != nil {
		return nil, err
	}
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			// Silent: most likely a plaintext client waiting for a greeting.
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			return conn, fmt.Errorf("secure: %w: no TLS handshake within %v", ErrPlaintext, min(timeout, plaintextWait))
		}
		return nil, fmt.Errorf("secure: handshake: %w", err)
	}
	if first[0] != tlsHandshakeRecord {
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		return conn, fmt.Errorf("secure: %w", ErrPlaintext)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	tc := tls.Server(&prefixConn{Conn: conn, prefix: first[:]}, c.server)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("secure: TLS handshake: %w", err)
	}
	want, err := c.proof(tc, roleClient)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	got, err := readProof(tc)
	if err != nil {
		if errors.Is(err, ErrNotMember) {
			return tc, fmt.Errorf("secure: client: %w", err)
		}
		return nil, fmt.Errorf("secure: reading client proof: %w", err)
	}
	if !hmac.Equal(got, want) {
		return tc, fmt.Errorf("secure: client: %w (wrong proof)", ErrNotMember)
	}
	mine, err := c.proof(tc, roleServer)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	if err := writeProof(tc, mine); err != nil {
		return nil, fmt.Errorf("secure: sending proof: %w", err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return tc, nil
}

// Client runs the client side on a freshly dialled conn: the TLS
// handshake and the membership proofs, all within timeout. It returns the
// TLS connection, ready for the protocol (whose first line is the server's
// greeting), with no deadline set. On error conn is closed. A refusal from
// the server is a *RefusedError; a server that fails to prove membership
// gives ErrNotMember.
func (c *Config) Client(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	tc, err := c.client1(conn, timeout)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

func (c *Config) client1(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	tc := tls.Client(conn, c.client)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("secure: TLS handshake: %w", err)
	}
	mine, err := c.proof(tc, roleClient)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	if err := writeProof(tc, mine); err != nil {
		return nil, fmt.Errorf("secure: sending proof: %w", err)
	}
	want, err := c.proof(tc, roleServer)
	if err != nil {
		return nil, fmt.Errorf("secure: %w", err)
	}
	got, err := readProof(tc)
	if err != nil {
		return nil, fmt.Errorf("secure: server: %w", err)
	}
	if !hmac.Equal(got, want) {
		return nil, fmt.Errorf("secure: server: %w (wrong proof)", ErrNotMember)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return tc, nil
}

func writeProof(w io.Writer, mac []byte) error {
	line := make([]byte, 0, len(proofPrefix)+2*len(mac)+1)
	line = append(line, proofPrefix...)
	line = hex.AppendEncode(line, mac)
	line = append(line, '\n')
	_, err := w.Write(line)
	return err
}

// readProof reads one line and decodes it as a proof. It reads byte by
// byte so as not to consume the protocol's first line behind it. A line
// that is not a proof line is returned as a *RefusedError.
func readProof(r io.Reader) ([]byte, error) {
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				return nil, fmt.Errorf("%w: connection closed without a proof", ErrNotMember)
			}
			return nil, err
		}
		if b[0] == '\n' {
			break
		}
		if len(line) >= maxProofLine {
			return nil, fmt.Errorf("%w: proof line too long", ErrNotMember)
		}
		line = append(line, b[0])
	}
	s := strings.TrimSuffix(string(line), "\r")
	hexMAC, ok := strings.CutPrefix(s, proofPrefix)
	if !ok {
		return nil, &RefusedError{Line: printable(s)}
	}
	mac, err := hex.DecodeString(hexMAC)
	if err != nil || len(mac) != sha256.Size {
		return nil, fmt.Errorf("%w: malformed proof", ErrNotMember)
	}
	return mac, nil
}

// printable keeps a line from a stranger safe to log.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// prefixConn replays bytes already read from Conn before reading more.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
