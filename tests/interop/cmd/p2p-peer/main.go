// Command p2p-peer is a go-libp2p host driven by JSON lines, used to prove the Python libp2p
// implementation of Glueberry Bridge against the real go-libp2p.
//
// Requests arrive on stdin, one JSON object per line: {"id": N, "cmd": "...", ...arguments}.
// Each gets exactly one answer on stdout, {"id": N, "ok": true, ...} or
// {"id": N, "ok": false, "error": "..."}. Commands run concurrently, so answers may come out
// of order. Unprompted events are printed on stdout as {"event": "...", ...}. Logs go to
// stderr. The first line printed is {"event": "ready", "peer_id": ..., "addrs": [...]}.
// The JSON-lines plumbing (command loop, arguments, output) is internal/jsonl, shared with
// cmd/glueberry-peer.
//
// The host is built with go-libp2p's default options (TLS and Noise, yamux, identify, ping),
// except for what the flags change: --security restricts or reorders the security
// transports, --seed fixes the Ed25519 identity.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glueberry-bridge/interop/internal/jsonl"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

const (
	patternModulus = 251
	chunkSize      = 64 << 10
)

// ---------------------------------------------------------------------------------------------
// Arguments

// protocols reads "protocols" (a list) or else "protocol" (a string), or the default.
func protocols(a *jsonl.Args, def string) []protocol.ID {
	if l := a.StrList("protocols"); len(l) > 0 {
		return protocol.ConvertFromStrings(l)
	}
	p := a.OptStr("protocol", def)
	if p == "" {
		a.Fail("missing argument \"protocol\"")
	}
	return []protocol.ID{protocol.ID(p)}
}

// ---------------------------------------------------------------------------------------------
// Deterministic pattern: byte i of a transfer is i % 251.

var patternBuf = func() []byte {
	b := make([]byte, chunkSize+patternModulus)
	for i := range b {
		b[i] = byte(i % patternModulus)
	}
	return b
}()

// pattern returns the n (<= chunkSize) pattern bytes that start at offset off.
func pattern(off int64, n int) []byte {
	start := int(off % patternModulus)
	return patternBuf[start : start+n]
}

// writePattern writes total pattern bytes (starting at offset 0) and returns their sha256
// (or "" when hash is false: benchmarks leave the hashing out of the timing).
func writePattern(w io.Writer, total int64, hash bool) (string, error) {
	h := sha256.New()
	for off := int64(0); off < total; {
		n := int(min(total-off, chunkSize))
		chunk := pattern(off, n)
		if _, err := w.Write(chunk); err != nil {
			return "", fmt.Errorf("write at offset %d: %w", off, err)
		}
		if hash {
			h.Write(chunk)
		}
		off += int64(n)
	}
	if !hash {
		return "", nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readPattern reads until EOF, checking every byte against the pattern, and returns the count
// and sha256 of what was read.
func readPattern(r io.Reader) (int64, string, error) {
	return readChecked(r, true)
}

// readChecked is readPattern with the check optional (without it: count to EOF, no hash).
func readChecked(r io.Reader, verify bool) (int64, string, error) {
	if !verify {
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			return n, "", fmt.Errorf("read at offset %d: %w", n, err)
		}
		return n, "", nil
	}
	h := sha256.New()
	buf := make([]byte, chunkSize)
	var off int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			got := buf[:n]
			want := pattern(off, n)
			for i := range got {
				if got[i] != want[i] {
					return off, "", fmt.Errorf("pattern mismatch at offset %d: got %d want %d", off+int64(i), got[i], want[i])
				}
			}
			h.Write(got)
			off += int64(n)
		}
		if errors.Is(err, io.EOF) {
			return off, hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return off, "", fmt.Errorf("read at offset %d: %w", off, err)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Error description

// describeErr classifies a stream error for the JSON answers.
func describeErr(err error) map[string]any {
	m := map[string]any{"error": nil, "eof": false, "reset": false, "timed_out": false}
	if err == nil {
		return m
	}
	if errors.Is(err, io.EOF) {
		m["eof"] = true
		return m
	}
	// yamux's deadline error is its own ("i/o deadline reached"), a net.Error with Timeout().
	var te interface{ Timeout() bool }
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &te) && te.Timeout()) {
		m["timed_out"] = true
	}
	m["error"] = err.Error()
	if errors.Is(err, network.ErrReset) {
		m["reset"] = true
	}
	var se *network.StreamError
	if errors.As(err, &se) {
		m["reset"] = true
		m["error_code"] = uint32(se.ErrorCode)
		m["remote"] = se.Remote
	}
	return m
}

func isReset(err error) bool {
	var se *network.StreamError
	return errors.Is(err, network.ErrReset) || errors.As(err, &se)
}

// ---------------------------------------------------------------------------------------------
// Stream tracing (--trace-streams): wraps the default resource manager to report the protocol
// of every stream, both directions, including those go-libp2p opens by itself.

type tracingRcmgr struct {
	network.ResourceManager
	out *jsonl.Output
}

func (t *tracingRcmgr) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	s, err := t.ResourceManager.OpenStream(p, dir)
	if err != nil {
		return nil, err
	}
	return &tracingStreamScope{StreamManagementScope: s, out: t.out, peer: p, dir: dir}, nil
}

type tracingStreamScope struct {
	network.StreamManagementScope
	out  *jsonl.Output
	peer peer.ID
	dir  network.Direction
}

func (s *tracingStreamScope) SetProtocol(proto protocol.ID) error {
	s.out.Event("stream_protocol", map[string]any{
		"peer_id": s.peer.String(), "direction": jsonl.DirName(s.dir), "protocol": string(proto),
	})
	return s.StreamManagementScope.SetProtocol(proto)
}

// ---------------------------------------------------------------------------------------------
// The application

type scriptedStream struct {
	s      network.Stream
	peer   peer.ID
	readMu sync.Mutex
}

type app struct {
	h   host.Host
	out *jsonl.Output
	ctx context.Context

	streamsMu sync.Mutex
	streams   map[string]*scriptedStream
	nextID    atomic.Uint64

	identMu    sync.Mutex
	identified map[peer.ID]*event.EvtPeerIdentificationCompleted
}

func (ap *app) commands() map[string]jsonl.Handler {
	return map[string]jsonl.Handler{
		"info":               ap.cmdInfo,
		"connect":            ap.cmdConnect,
		"echo":               ap.cmdEcho,
		"send_bulk":          ap.cmdSendBulk,
		"fetch_bulk":         ap.cmdFetchBulk,
		"messages":           ap.cmdMessages,
		"ping":               ap.cmdPing,
		"identify_info":      ap.cmdIdentifyInfo,
		"open_raw":           ap.cmdOpenRaw,
		"stream_write":       ap.cmdStreamWrite,
		"stream_read":        ap.cmdStreamRead,
		"stream_close_write": ap.cmdStreamCloseWrite,
		"stream_close_read":  ap.cmdStreamCloseRead,
		"stream_reset":       ap.cmdStreamReset,
		"stream_close":       ap.cmdStreamClose,
		"disconnect":         ap.cmdDisconnect,
		"conns":              ap.cmdConns,
		"set_handler":        ap.cmdSetHandler,
		"remove_handler":     ap.cmdRemoveHandler,
	}
}

func (ap *app) addrs() []string {
	var out []string
	for _, a := range ap.h.Addrs() {
		out = append(out, a.String())
	}
	return out
}

func (ap *app) cmdInfo(context.Context, *jsonl.Args) (map[string]any, error) {
	return map[string]any{
		"peer_id":   ap.h.ID().String(),
		"addrs":     ap.addrs(),
		"protocols": protocol.ConvertToStrings(ap.h.Mux().Protocols()),
	}, nil
}

func (ap *app) cmdConnect(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	addrStrs := a.StrList("addrs")
	if a.Err() != nil {
		return nil, a.Err()
	}
	info := peer.AddrInfo{ID: p}
	for _, s := range addrStrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bad multiaddr %q: %w", s, err)
		}
		info.Addrs = append(info.Addrs, m)
	}
	start := time.Now()
	if err := ap.h.Connect(ctx, info); err != nil {
		return nil, err
	}
	res := map[string]any{"elapsed_ms": jsonl.Ms(time.Since(start))}
	if conns := ap.h.Network().ConnsToPeer(p); len(conns) > 0 {
		for k, v := range connInfo(conns[0]) {
			res[k] = v
		}
	}
	return res, nil
}

// newStream opens a stream through the host (lazy multistream negotiation when identify
// already told us the protocol is supported) and applies the context deadline to it.
func (ap *app) newStream(ctx context.Context, p peer.ID, protos ...protocol.ID) (network.Stream, error) {
	s, err := ap.h.NewStream(ctx, p, protos...)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return s, nil
}

func (ap *app) cmdEcho(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	count := a.OptInt("count", 1)
	size := a.OptInt("size", 1024)
	protos := protocols(a, "/echo/1.0.0")
	if a.Err() != nil {
		return nil, a.Err()
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, count)
	for i := int64(0); i < count; i++ {
		wg.Add(1)
		go func(i int64) {
			defer wg.Done()
			if err := ap.echoOnce(ctx, p, protos, size); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		return nil, fmt.Errorf("%d of %d echo streams failed; first: %s", len(all), count, all[0])
	}
	return map[string]any{"streams": count, "bytes_per_stream": size, "elapsed_ms": jsonl.Ms(time.Since(start))}, nil
}

func (ap *app) echoOnce(ctx context.Context, p peer.ID, protos []protocol.ID, size int64) error {
	s, err := ap.newStream(ctx, p, protos...)
	if err != nil {
		return err
	}
	defer s.Close()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		for off := int64(0); off < size; off += chunkSize {
			if _, err := s.Write(data[off:min(off+chunkSize, size)]); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
		}
		werr <- s.CloseWrite()
	}()
	got, rerr := io.ReadAll(s)
	if err := <-werr; err != nil {
		s.Reset()
		return err
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), rerr)
	}
	if int64(len(got)) != size {
		return fmt.Errorf("echoed %d bytes, sent %d", len(got), size)
	}
	for i := range got {
		if got[i] != data[i] {
			return fmt.Errorf("echoed data differs at offset %d", i)
		}
	}
	return nil
}

func (ap *app) cmdSendBulk(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	total := a.OptInt("bytes", 1<<20)
	protos := protocols(a, "/sink/1.0.0")
	if a.Err() != nil {
		return nil, a.Err()
	}
	start := time.Now()
	s, err := ap.newStream(ctx, p, protos...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	sum, err := writePattern(s, total, a.OptBool("hash", true))
	if err != nil {
		s.Reset()
		return nil, err
	}
	if err := s.CloseWrite(); err != nil {
		return nil, fmt.Errorf("close write: %w", err)
	}
	written := time.Since(start)
	received, err := io.Copy(io.Discard, s)
	if err != nil {
		return nil, fmt.Errorf("waiting for the remote to close: %w", err)
	}
	elapsed := time.Since(start)
	return map[string]any{
		"bytes": total, "sha256": sum, "received": received,
		"elapsed_ms": jsonl.Ms(elapsed), "write_ms": jsonl.Ms(written),
		"mib_per_s": float64(total) / (1 << 20) / elapsed.Seconds(),
	}, nil
}

func (ap *app) cmdFetchBulk(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	total := a.OptInt("bytes", 1<<20)
	closeWrite := a.OptBool("close_write", true)
	protos := protocols(a, "/source/1.0.0")
	if a.Err() != nil {
		return nil, a.Err()
	}
	start := time.Now()
	s, err := ap.newStream(ctx, p, protos...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(total))
	if _, err := s.Write(hdr[:]); err != nil {
		s.Reset()
		return nil, fmt.Errorf("write count: %w", err)
	}
	if closeWrite {
		if err := s.CloseWrite(); err != nil {
			return nil, fmt.Errorf("close write: %w", err)
		}
	}
	n, sum, err := readPattern(s)
	if err != nil {
		s.Reset()
		return nil, err
	}
	if n != total {
		return nil, fmt.Errorf("received %d bytes, asked for %d", n, total)
	}
	elapsed := time.Since(start)
	return map[string]any{
		"bytes": n, "sha256": sum, "elapsed_ms": jsonl.Ms(elapsed),
		"mib_per_s": float64(n) / (1 << 20) / elapsed.Seconds(),
	}, nil
}

func (ap *app) cmdMessages(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	count := a.OptInt("count", 1000)
	size := a.OptInt("size", 64)
	verify := a.OptBool("verify", true)
	protos := protocols(a, "/echo/1.0.0")
	if a.Err() != nil {
		return nil, a.Err()
	}
	if size <= 0 || size > chunkSize {
		return nil, fmt.Errorf("size must be in 1..%d", chunkSize)
	}
	start := time.Now()
	s, err := ap.newStream(ctx, p, protos...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	total := count * size
	werr := make(chan error, 1)
	go func() {
		for k := int64(0); k < count; k++ {
			if _, err := s.Write(pattern(k*size, int(size))); err != nil {
				werr <- fmt.Errorf("write message %d: %w", k, err)
				return
			}
		}
		werr <- s.CloseWrite()
	}()
	n, _, rerr := readChecked(s, verify)
	if err := <-werr; err != nil {
		s.Reset()
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	if n != total {
		return nil, fmt.Errorf("received %d bytes back, sent %d", n, total)
	}
	elapsed := time.Since(start)
	return map[string]any{
		"messages": count, "bytes": total, "elapsed_ms": jsonl.Ms(elapsed),
		"messages_per_s": float64(count) / elapsed.Seconds(),
	}, nil
}

func (ap *app) cmdPing(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	count := a.OptInt("count", 1)
	if a.Err() != nil {
		return nil, a.Err()
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := ping.Ping(pctx, ap.h, p)
	rtts := make([]float64, 0, count)
	for len(rtts) < int(count) {
		select {
		case r, ok := <-results:
			if !ok {
				return nil, fmt.Errorf("ping stopped after %d replies: %w", len(rtts), ctx.Err())
			}
			if r.Error != nil {
				return nil, fmt.Errorf("ping %d: %w", len(rtts), r.Error)
			}
			rtts = append(rtts, float64(r.RTT.Nanoseconds())/1000)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return map[string]any{"rtts_us": rtts}, nil
}

func (ap *app) cmdIdentifyInfo(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	// Identify runs in the background after a connection opens; answer only once it has
	// finished on every connection to p, so the peerstore holds what the peer said.
	if ids, ok := ap.h.(interface{ IDService() identify.IDService }); ok {
		for _, c := range ap.h.Network().ConnsToPeer(p) {
			select {
			case <-ids.IDService().IdentifyWait(c):
			case <-ctx.Done():
				return nil, fmt.Errorf("identify of %s did not finish: %w", p, ctx.Err())
			}
		}
	}
	ps := ap.h.Peerstore()
	protos, err := ps.GetProtocols(p)
	if err != nil {
		return nil, err
	}
	protoStrs := protocol.ConvertToStrings(protos)
	sort.Strings(protoStrs)
	res := map[string]any{"protocols": protoStrs}
	for key, name := range map[string]string{"AgentVersion": "agent_version", "ProtocolVersion": "protocol_version"} {
		res[name] = nil
		if v, err := ps.Get(p, key); err == nil {
			res[name] = v
		}
	}
	var addrs []string
	for _, m := range ps.Addrs(p) {
		addrs = append(addrs, m.String())
	}
	sort.Strings(addrs)
	res["addrs"] = addrs
	pk := ps.PubKey(p)
	res["public_key_matches"] = pk != nil && p.MatchesPublicKey(pk)
	if pk != nil {
		res["public_key_type"] = pk.Type().String()
	}
	ap.identMu.Lock()
	ev := ap.identified[p]
	ap.identMu.Unlock()
	res["identified"] = ev != nil
	if ev != nil {
		f := identifiedFields(ev)
		res["advertised_listen_addrs"] = f["listen_addrs"]
		res["observed_addr"] = f["observed_addr"]
		res["signed_peer_record"] = f["signed_peer_record"]
	}
	return res, nil
}

// ---------------------------------------------------------------------------------------------
// Scripted streams

type lazyStream struct {
	network.Stream
	rw io.ReadWriteCloser
}

func (s *lazyStream) Read(b []byte) (int, error)  { return s.rw.Read(b) }
func (s *lazyStream) Write(b []byte) (int, error) { return s.rw.Write(b) }
func (s *lazyStream) Close() error                { return s.rw.Close() }
func (s *lazyStream) CloseWrite() error {
	if f, ok := s.rw.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
	return s.Stream.CloseWrite()
}

func (ap *app) register(s network.Stream) string {
	id := "s" + strconv.FormatUint(ap.nextID.Add(1), 10)
	ap.streamsMu.Lock()
	ap.streams[id] = &scriptedStream{s: s, peer: s.Conn().RemotePeer()}
	ap.streamsMu.Unlock()
	return id
}

func (ap *app) lookup(a *jsonl.Args) (*scriptedStream, error) {
	id := a.Str("stream_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	ap.streamsMu.Lock()
	defer ap.streamsMu.Unlock()
	st, ok := ap.streams[id]
	if !ok {
		return nil, fmt.Errorf("unknown stream_id %q", id)
	}
	return st, nil
}

// cmdOpenRaw opens a stream and keeps it for the stream_* commands. mode "host" (default)
// goes through host.NewStream exactly as applications do: lazy negotiation when identify
// said the peer supports the protocol, eager otherwise. "eager" always waits for the
// multistream answer; "lazy" always sends the proposal with the first write (or close).
func (ap *app) cmdOpenRaw(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	protos := protocols(a, "")
	mode := a.OptStr("mode", "host")
	if a.Err() != nil {
		return nil, a.Err()
	}
	var s network.Stream
	lazy := false
	switch mode {
	case "host":
		supported, _ := ap.h.Peerstore().SupportsProtocols(p, protos...)
		lazy = len(supported) > 0
		st, err := ap.h.NewStream(ctx, p, protos...)
		if err != nil {
			return nil, err
		}
		s = st
	case "eager", "lazy":
		if err := ap.h.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
			return nil, err
		}
		st, err := ap.h.Network().NewStream(network.WithNoDial(ctx, "connected"), p)
		if err != nil {
			return nil, err
		}
		if mode == "eager" {
			if dl, ok := ctx.Deadline(); ok {
				_ = st.SetDeadline(dl)
			}
			selected, err := msmux.SelectOneOf(protos, st)
			if err != nil {
				st.ResetWithError(network.StreamProtocolNegotiationFailed)
				return nil, fmt.Errorf("failed to negotiate protocol: %w", err)
			}
			_ = st.SetDeadline(time.Time{})
			if err := st.SetProtocol(selected); err != nil {
				st.Reset()
				return nil, err
			}
			s = st
		} else {
			if len(protos) != 1 {
				return nil, errors.New("lazy mode takes exactly one protocol")
			}
			lazy = true
			if err := st.SetProtocol(protos[0]); err != nil {
				st.Reset()
				return nil, err
			}
			s = &lazyStream{Stream: st, rw: msmux.NewMSSelect(st, protos[0])}
		}
	default:
		return nil, fmt.Errorf("unknown mode %q (host, eager, lazy)", mode)
	}
	id := ap.register(s)
	return map[string]any{"stream_id": id, "protocol": string(s.Protocol()), "lazy": lazy}, nil
}

func (ap *app) cmdStreamWrite(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	data, err := hex.DecodeString(a.Str("hex"))
	if a.Err() != nil {
		return nil, a.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("bad hex: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = st.s.SetWriteDeadline(dl)
		defer func() { _ = st.s.SetWriteDeadline(time.Time{}) }()
	}
	n, err := st.s.Write(data)
	if err != nil {
		d := describeErr(err)
		return nil, fmt.Errorf("write failed after %d bytes (reset=%v): %s", n, d["reset"], err)
	}
	return map[string]any{"written": n}, nil
}

// cmdStreamRead reads until n bytes arrived (n <= 0: until EOF), EOF, an error or the timeout.
// Errors are not failures of the command: they are described in the answer.
func (ap *app) cmdStreamRead(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	n := a.OptInt("n", 0)
	timeout := time.Duration(a.OptInt("timeout_ms", 5000)) * time.Millisecond
	if a.Err() != nil {
		return nil, a.Err()
	}
	st.readMu.Lock()
	defer st.readMu.Unlock()
	_ = st.s.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = st.s.SetReadDeadline(time.Time{}) }()
	var got []byte
	buf := make([]byte, chunkSize)
	var rerr error
	for n <= 0 || int64(len(got)) < n {
		want := len(buf)
		if n > 0 {
			want = int(min(int64(want), n-int64(len(got))))
		}
		k, err := st.s.Read(buf[:want])
		got = append(got, buf[:k]...)
		if err != nil {
			rerr = err
			break
		}
	}
	res := describeErr(rerr)
	res["hex"] = hex.EncodeToString(got)
	res["n"] = len(got)
	return res, nil
}

func (ap *app) cmdStreamCloseWrite(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	return map[string]any{}, st.s.CloseWrite()
}

func (ap *app) cmdStreamCloseRead(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	return map[string]any{}, st.s.CloseRead()
}

func (ap *app) cmdStreamReset(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	if a.Has("error_code") {
		code := a.OptInt("error_code", 0)
		if a.Err() != nil {
			return nil, a.Err()
		}
		return map[string]any{}, st.s.ResetWithError(network.StreamErrorCode(code))
	}
	return map[string]any{}, st.s.Reset()
}

func (ap *app) cmdStreamClose(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	st, err := ap.lookup(a)
	if err != nil {
		return nil, err
	}
	return map[string]any{}, st.s.Close()
}

// ---------------------------------------------------------------------------------------------
// Connections

func connInfo(c network.Conn) map[string]any {
	cs := c.ConnState()
	return map[string]any{
		"conn_id":      c.ID(),
		"direction":    jsonl.DirName(c.Stat().Direction),
		"security":     string(cs.Security),
		"muxer":        string(cs.StreamMultiplexer),
		"transport":    cs.Transport,
		"early_muxer":  cs.UsedEarlyMuxerNegotiation,
		"local_addr":   c.LocalMultiaddr().String(),
		"remote_addr":  c.RemoteMultiaddr().String(),
		"remote_peer":  c.RemotePeer().String(),
		"limited":      c.Stat().Limited,
		"stream_count": len(c.GetStreams()),
	}
}

func (ap *app) cmdConns(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	conns := ap.h.Network().ConnsToPeer(p)
	list := make([]map[string]any, 0, len(conns))
	for _, c := range conns {
		ci := connInfo(c)
		streams := []map[string]any{}
		for _, s := range c.GetStreams() {
			streams = append(streams, map[string]any{
				"protocol": string(s.Protocol()), "direction": jsonl.DirName(s.Stat().Direction),
			})
		}
		ci["streams"] = streams
		list = append(list, ci)
	}
	return map[string]any{
		"count": len(conns), "conns": list,
		"connectedness": ap.h.Network().Connectedness(p).String(),
	}, nil
}

func (ap *app) cmdDisconnect(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	n := len(ap.h.Network().ConnsToPeer(p))
	return map[string]any{"closed": n}, ap.h.Network().ClosePeer(p)
}

// ---------------------------------------------------------------------------------------------
// Stream handlers

func (ap *app) behaviour(name string) (network.StreamHandler, error) {
	switch name {
	case "echo":
		return ap.handleEcho, nil
	case "sink":
		return ap.handleSink, nil
	case "source":
		return ap.handleSource, nil
	case "reset":
		return ap.handleReset, nil
	case "close":
		return func(s network.Stream) { _ = s.Close() }, nil
	case "hold":
		return ap.handleHold, nil
	case "discard":
		return func(s network.Stream) {
			_, _ = io.Copy(io.Discard, s)
			_ = s.Close()
		}, nil
	}
	return nil, fmt.Errorf("unknown behaviour %q (echo, sink, source, reset, close, hold, discard)", name)
}

func (ap *app) streamFields(s network.Stream) map[string]any {
	return map[string]any{"protocol": string(s.Protocol()), "peer_id": s.Conn().RemotePeer().String()}
}

func (ap *app) reportReset(s network.Stream, err error) {
	if isReset(err) {
		f := ap.streamFields(s)
		for k, v := range describeErr(err) {
			f[k] = v
		}
		ap.out.Event("stream_reset", f)
	}
}

func (ap *app) handleEcho(s network.Stream) {
	n, err := io.Copy(s, s)
	if err == nil {
		err = s.CloseWrite()
	}
	f := ap.streamFields(s)
	f["bytes"] = n
	f["error"] = nil
	if err != nil {
		f["error"] = err.Error()
		ap.reportReset(s, err)
		s.Reset()
	} else {
		_ = s.Close()
	}
	ap.out.Event("echo_done", f)
}

func (ap *app) handleSink(s network.Stream) {
	h := sha256.New()
	n, err := io.Copy(h, s)
	f := ap.streamFields(s)
	f["bytes"] = n
	f["sha256"] = hex.EncodeToString(h.Sum(nil))
	f["error"] = nil
	if err != nil {
		f["error"] = err.Error()
		ap.reportReset(s, err)
	}
	ap.out.Event("sink_done", f)
	if err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

func (ap *app) handleSource(s network.Stream) {
	var hdr [8]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		ap.reportReset(s, err)
		log.Printf("source: reading count: %v", err)
		s.Reset()
		return
	}
	total := int64(binary.BigEndian.Uint64(hdr[:]))
	if _, err := writePattern(s, total, true); err != nil {
		ap.reportReset(s, err)
		log.Printf("source: %v", err)
		s.Reset()
		return
	}
	_ = s.CloseWrite()
	_ = s.Close()
}

func (ap *app) handleReset(s network.Stream) {
	var b [1]byte
	_, _ = io.ReadFull(s, b[:])
	_ = s.Reset()
}

// handleHold keeps an inbound stream for the stream_* commands and announces it.
func (ap *app) handleHold(s network.Stream) {
	f := ap.streamFields(s)
	f["stream_id"] = ap.register(s)
	ap.out.Event("stream_opened", f)
}

func (ap *app) cmdSetHandler(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	proto := a.Str("protocol")
	name := a.OptStr("behaviour", "echo")
	if a.Err() != nil {
		return nil, a.Err()
	}
	h, err := ap.behaviour(name)
	if err != nil {
		return nil, err
	}
	ap.h.SetStreamHandler(protocol.ID(proto), h)
	return map[string]any{}, nil
}

func (ap *app) cmdRemoveHandler(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	proto := a.Str("protocol")
	if a.Err() != nil {
		return nil, a.Err()
	}
	ap.h.RemoveStreamHandler(protocol.ID(proto))
	return map[string]any{}, nil
}

// ---------------------------------------------------------------------------------------------
// Events

func identifiedFields(ev *event.EvtPeerIdentificationCompleted) map[string]any {
	var addrs []string
	for _, m := range ev.ListenAddrs {
		addrs = append(addrs, m.String())
	}
	protos := protocol.ConvertToStrings(ev.Protocols)
	sort.Strings(protos)
	f := map[string]any{
		"peer_id":            ev.Peer.String(),
		"agent_version":      ev.AgentVersion,
		"protocol_version":   ev.ProtocolVersion,
		"protocols":          protos,
		"listen_addrs":       addrs,
		"signed_peer_record": ev.SignedPeerRecord != nil,
		"observed_addr":      nil,
	}
	if ev.ObservedAddr != nil {
		f["observed_addr"] = ev.ObservedAddr.String()
	}
	if ev.Conn != nil {
		f["conn_id"] = ev.Conn.ID()
	}
	return f
}

func (ap *app) watchEvents() error {
	sub, err := ap.h.EventBus().Subscribe([]any{
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtPeerIdentificationFailed),
		new(event.EvtPeerProtocolsUpdated),
	})
	if err != nil {
		return err
	}
	go func() {
		defer sub.Close()
		for {
			select {
			case <-ap.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				switch ev := e.(type) {
				case event.EvtPeerIdentificationCompleted:
					ap.identMu.Lock()
					ap.identified[ev.Peer] = &ev
					ap.identMu.Unlock()
					ap.out.Event("identified", identifiedFields(&ev))
				case event.EvtPeerIdentificationFailed:
					ap.out.Event("identify_failed", map[string]any{
						"peer_id": ev.Peer.String(), "error": fmt.Sprint(ev.Reason),
					})
				case event.EvtPeerProtocolsUpdated:
					ap.out.Event("protocols_updated", map[string]any{
						"peer_id": ev.Peer.String(),
						"added":   protocol.ConvertToStrings(ev.Added),
						"removed": protocol.ConvertToStrings(ev.Removed),
					})
				}
			}
		}
	}()
	ap.h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			f := connInfo(c)
			f["peer_id"] = c.RemotePeer().String()
			ap.out.Event("connected", f)
		},
		DisconnectedF: func(n network.Network, c network.Conn) {
			ap.out.Event("disconnected", map[string]any{
				"peer_id":    c.RemotePeer().String(),
				"conn_id":    c.ID(),
				"direction":  jsonl.DirName(c.Stat().Direction),
				"conns_left": len(n.ConnsToPeer(c.RemotePeer())),
			})
		},
	})
	return nil
}

// ---------------------------------------------------------------------------------------------
// Main

func buildOptions(seed, security, listen string, trace, unlimited bool, out *jsonl.Output) ([]libp2p.Option, error) {
	var key crypto.PrivKey
	var err error
	if seed != "" {
		raw, err := hex.DecodeString(seed)
		if err != nil || len(raw) != 32 {
			return nil, errors.New("--seed must be 64 hex characters (a 32-byte Ed25519 seed)")
		}
		// go-libp2p's Ed25519 private key is crypto/ed25519's 64 bytes (seed || public key).
		key, err = crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(raw))
		if err != nil {
			return nil, err
		}
	} else {
		key, _, err = crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
	}
	opts := []libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings(strings.Split(listen, ",")...)}
	switch security {
	case "", "default":
	default:
		for _, name := range strings.Split(security, ",") {
			switch strings.TrimSpace(name) {
			case "noise":
				opts = append(opts, libp2p.Security(noise.ID, noise.New))
			case "tls":
				opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
			default:
				return nil, fmt.Errorf("unknown security %q (default, noise, tls, or a comma list in preference order)", name)
			}
		}
	}
	if trace || unlimited {
		// The same resource manager go-libp2p builds by default (or one without limits),
		// wrapped to report protocols when tracing.
		limits := rcmgr.DefaultLimits
		libp2p.SetDefaultServiceLimits(&limits)
		limiter := rcmgr.NewFixedLimiter(limits.AutoScale())
		if unlimited {
			limiter = rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits)
		}
		mgr, err := rcmgr.NewResourceManager(limiter)
		if err != nil {
			return nil, err
		}
		var rm network.ResourceManager = mgr
		if trace {
			rm = &tracingRcmgr{ResourceManager: mgr, out: out}
		}
		opts = append(opts, libp2p.ResourceManager(rm))
	}
	return opts, nil
}

func main() {
	seed := flag.String("seed", "", "Ed25519 seed, 64 hex characters (default: random)")
	security := flag.String("security", "default", "default | noise | tls | comma list in preference order")
	listen := flag.String("listen", "/ip4/127.0.0.1/tcp/0", "listen multiaddrs, comma separated")
	trace := flag.Bool("trace-streams", false, "emit a stream_protocol event for every stream")
	unlimited := flag.Bool("unlimited-resources", false, "no resource manager limits (default: go-libp2p's autoscaled defaults, e.g. 75 inbound streams per protocol per peer)")
	flag.Parse()
	log.SetOutput(os.Stderr)
	log.SetPrefix("p2p-peer: ")

	out := jsonl.NewOutput(os.Stdout)
	opts, err := buildOptions(*seed, *security, *listen, *trace, *unlimited, out)
	if err != nil {
		log.Fatal(err)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		log.Fatalf("libp2p.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ap := &app{
		h: h, out: out, ctx: ctx,
		streams:    map[string]*scriptedStream{},
		identified: map[peer.ID]*event.EvtPeerIdentificationCompleted{},
	}
	for proto, name := range map[string]string{
		"/echo/1.0.0": "echo", "/sink/1.0.0": "sink", "/source/1.0.0": "source", "/reset/1.0.0": "reset",
		"/discard/1.0.0": "discard",
	} {
		hf, _ := ap.behaviour(name)
		h.SetStreamHandler(protocol.ID(proto), hf)
	}
	if err := ap.watchEvents(); err != nil {
		log.Fatalf("event bus: %v", err)
	}
	out.Event("ready", map[string]any{
		"peer_id":   h.ID().String(),
		"addrs":     ap.addrs(),
		"protocols": protocol.ConvertToStrings(h.Mux().Protocols()),
		"security":  *security,
		"pid":       os.Getpid(),
	})

	jsonl.Serve(ctx, os.Stdin, out, ap.commands(), func() {
		cancel()
		if err := h.Close(); err != nil {
			log.Printf("closing host: %v", err)
		}
	})
}
