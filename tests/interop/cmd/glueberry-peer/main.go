// Command glueberry-peer is a real Glueberry node (github.com/blockberries/glueberry v1.2.10)
// driven by JSON lines, used to prove the Python Glueberry implementation of Glueberry Bridge
// against the Go library.
//
// Requests arrive on stdin, one JSON object per line: {"id": N, "cmd": "...", ...arguments}.
// Each gets exactly one answer on stdout, {"id": N, "ok": true, ...} or
// {"id": N, "ok": false, "error": "..."}. Commands run concurrently, so answers may come out
// of order. Unprompted events are printed on stdout as {"event": "...", ...}; every event
// carries "time_ms" (Unix time in milliseconds, microsecond resolution) so that timings can be
// compared between processes. Logs go to stderr. The first line printed is
// {"event": "ready", "peer_id": ..., "addrs": [...], "public_key": hex, ...}.
// The JSON-lines plumbing (command loop, arguments, output) is internal/jsonl, shared with
// cmd/p2p-peer.
//
// --handshake auto runs the ready-made application handshake shared with the Python and
// JavaScript implementations (Hello = 0x01 || name, PubKey = 0x02 || 32-byte Ed25519 key,
// Complete = 0x03; see README.md); --handshake manual leaves every handshake step to commands.
//
// --on-message room turns the node into a small chat room server on the stream "chat" (room.go).
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"log"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/blockberries/glueberry"
	"github.com/blockberries/glueberry/pkg/addressbook"
	"github.com/blockberries/glueberry/pkg/protocol"
	"github.com/blockberries/glueberry/pkg/streams"
	"github.com/glueberry-bridge/interop/internal/jsonl"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

const (
	// Application handshake message types (the first byte of every handshake message).
	msgHello    byte = 0x01
	msgPubKey   byte = 0x02
	msgComplete byte = 0x03

	maxNameLen      = 64 // bytes of UTF-8 in a Hello
	maxHexReport    = 64 // payload bytes shown in a "message" event
	maxGapsReported = 20
	fillerModulus   = 251
)

// ---------------------------------------------------------------------------------------------
// Values in answers and events

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Format(time.RFC3339Nano)
}

func errOrNil(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

// ---------------------------------------------------------------------------------------------
// Arguments

// publicKey reads a required Ed25519 public key written in hex.
func publicKey(a *jsonl.Args, k string) ed25519.PublicKey {
	b := a.HexBytes(k)
	if a.Err() == nil && len(b) != ed25519.PublicKeySize {
		a.Fail("argument %q: an Ed25519 public key is %d bytes, got %d", k, ed25519.PublicKeySize, len(b))
	}
	return ed25519.PublicKey(b)
}

// streamList reads a list of stream names, defaulting to the --streams flag.
func streamList(a *jsonl.Args, k string, def []string) []string {
	if l := a.StrList(k); len(l) > 0 {
		return l
	}
	return def
}

// ---------------------------------------------------------------------------------------------
// Metrics: counts the drops and errors Glueberry only reports through its Metrics interface.

type counters struct {
	glueberry.NopMetrics
	messagesDropped  atomic.Int64
	eventsDropped    atomic.Int64
	decryptionErrors atomic.Int64
	backpressure     atomic.Int64
}

func (c *counters) MessageDropped()            { c.messagesDropped.Add(1) }
func (c *counters) EventDropped()              { c.eventsDropped.Add(1) }
func (c *counters) DecryptionError()           { c.decryptionErrors.Add(1) }
func (c *counters) BackpressureEngaged(string) { c.backpressure.Add(1) }

func (c *counters) fields() map[string]any {
	return map[string]any{
		"messages_dropped":     c.messagesDropped.Load(),
		"events_dropped":       c.eventsDropped.Load(),
		"decryption_errors":    c.decryptionErrors.Load(),
		"backpressure_engaged": c.backpressure.Load(),
	}
}

// ---------------------------------------------------------------------------------------------
// Logger: Glueberry's Logger interface, to stderr.

type stderrLogger struct{ level int }

var logLevels = map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3, "none": 4}

func (l stderrLogger) log(level int, name, msg string, kv []any) {
	if level < l.level {
		return
	}
	var sb strings.Builder
	sb.WriteString(name)
	sb.WriteString(" ")
	sb.WriteString(msg)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", kv[i], kv[i+1])
	}
	log.Print(sb.String())
}

func (l stderrLogger) Debug(msg string, kv ...any) { l.log(0, "DEBUG", msg, kv) }
func (l stderrLogger) Info(msg string, kv ...any)  { l.log(1, "INFO", msg, kv) }
func (l stderrLogger) Warn(msg string, kv ...any)  { l.log(2, "WARN", msg, kv) }
func (l stderrLogger) Error(msg string, kv ...any) { l.log(3, "ERROR", msg, kv) }

// ---------------------------------------------------------------------------------------------
// Per (peer, stream) summaries of received messages.

type streamKey struct {
	peer   peer.ID
	stream string
}

type gap struct {
	Expected uint64 `json:"expected"`
	Got      uint64 `json:"got"`
}

type summary struct {
	count    int64
	bytes    int64
	sha      hash.Hash
	seqCount int64 // messages of 8 bytes or more
	expected uint64
	lastSeq  uint64
	gaps     []gap
	gapCount int64
	first    time.Time
	last     time.Time
	notify   chan struct{} // closed (and replaced) on every change
}

func newSummary() *summary {
	return &summary{sha: sha256.New(), notify: make(chan struct{})}
}

func (s *summary) add(data []byte, at time.Time) {
	s.count++
	s.bytes += int64(len(data))
	s.sha.Write(data)
	if s.first.IsZero() {
		s.first = at
	}
	s.last = at
	if len(data) >= 8 {
		seq := binary.BigEndian.Uint64(data[:8])
		if seq != s.expected {
			s.gapCount++
			if len(s.gaps) < maxGapsReported {
				s.gaps = append(s.gaps, gap{Expected: s.expected, Got: seq})
			}
		}
		s.seqCount++
		s.lastSeq = seq
		s.expected = seq + 1
	}
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *summary) fields() map[string]any {
	gaps := s.gaps
	if gaps == nil {
		gaps = []gap{}
	}
	var lastSeq any
	if s.seqCount > 0 {
		lastSeq = s.lastSeq
	}
	return map[string]any{
		"count":      s.count,
		"bytes":      s.bytes,
		"sha256":     hex.EncodeToString(s.sha.Sum(nil)),
		"in_order":   s.gapCount == 0,
		"seq_count":  s.seqCount,
		"last_seq":   lastSeq,
		"gaps":       gaps,
		"gap_count":  s.gapCount,
		"first_time": timeOrNil(s.first),
		"last_time":  timeOrNil(s.last),
		"span_ms":    jsonl.Ms(s.last.Sub(s.first)),
	}
}

// ---------------------------------------------------------------------------------------------
// The automatic application handshake: one actor goroutine per peer serialises everything that
// touches that peer's handshake state.

type hsKind int

const (
	hsDialled hsKind = iota // we got StateConnected after our own dial
	hsMessage               // a message arrived on the handshake stream
	hsReset                 // a Disconnected event
)

type hsAction struct {
	kind hsKind
	data []byte
}

type hsState struct {
	sentHello, sentPubKey, sentComplete bool
	gotHello, gotPubKey, gotComplete    bool
	prepared, finalized                 bool
	peerName                            string
	peerKey                             []byte
}

func (s *hsState) fields() map[string]any {
	var key any
	if s.peerKey != nil {
		key = hex.EncodeToString(s.peerKey)
	}
	return map[string]any{
		"sent_hello": s.sentHello, "sent_pubkey": s.sentPubKey, "sent_complete": s.sentComplete,
		"got_hello": s.gotHello, "got_pubkey": s.gotPubKey, "got_complete": s.gotComplete,
		"prepared": s.prepared, "finalized": s.finalized,
		"peer_name": s.peerName, "peer_public_key": key,
	}
}

type hsPeer struct {
	ch    chan hsAction
	mu    sync.Mutex
	state hsState
}

// ---------------------------------------------------------------------------------------------
// The application

type settings struct {
	name        string
	auto        bool
	streams     []string
	noComplete  bool
	hsDelay     time.Duration
	onMessage   string
	report      bool
	addressBook string
	tempDir     string
}

type app struct {
	node  *glueberry.Node
	out   *jsonl.Output
	ctx   context.Context
	cfg   settings
	stats *counters

	sumMu     sync.Mutex
	summaries map[streamKey]*summary

	hsMu  sync.Mutex
	hs    map[peer.ID]*hsPeer
	dials map[peer.ID]bool // a Connecting/Reconnecting event was seen; the next Connected is ours

	echoMu sync.Mutex
	echoes map[streamKey]chan []byte

	decMu         sync.Mutex
	decryptErrors map[peer.ID]int64

	rttMu   sync.Mutex
	rttWait map[streamKey]chan struct{} // an rtt command waits for the next message on the key

	room *roomServer // --on-message room (see room.go)
}

func (ap *app) commands() map[string]jsonl.Handler {
	return map[string]jsonl.Handler{
		"info":                        ap.cmdInfo,
		"add_peer":                    ap.cmdAddPeer,
		"remove_peer":                 ap.cmdRemovePeer,
		"get_peer":                    ap.cmdGetPeer,
		"list_peers":                  ap.cmdListPeers,
		"peer_addrs":                  ap.cmdPeerAddrs,
		"connect":                     ap.cmdConnect,
		"disconnect":                  ap.cmdDisconnect,
		"blacklist":                   ap.cmdBlacklist,
		"unblacklist":                 ap.cmdUnblacklist,
		"cancel_reconnection":         ap.cmdCancelReconnection,
		"state":                       ap.cmdState,
		"send":                        ap.cmdSend,
		"send_many":                   ap.cmdSendMany,
		"rtt":                         ap.cmdRTT,
		"prepare_streams":             ap.cmdPrepareStreams,
		"finalize_handshake":          ap.cmdFinalizeHandshake,
		"complete_handshake":          ap.cmdCompleteHandshake,
		"establish_encrypted_streams": ap.cmdEstablishEncryptedStreams,
		"hs_status":                   ap.cmdHsStatus,
		"summary":                     ap.cmdSummary,
		"wait_messages":               ap.cmdWaitMessages,
		"stats":                       ap.cmdStats,
		"addressbook":                 ap.cmdAddressBook,
		"debug_state":                 ap.cmdDebugState,
		"rooms":                       ap.cmdRooms,
	}
}

func (ap *app) addrs() []string {
	out := []string{}
	for _, a := range ap.node.Addrs() {
		out = append(out, a.String())
	}
	return out
}

func (ap *app) cmdInfo(context.Context, *jsonl.Args) (map[string]any, error) {
	return map[string]any{
		"peer_id":    ap.node.PeerID().String(),
		"addrs":      ap.addrs(),
		"public_key": hex.EncodeToString(ap.node.PublicKey()),
		"version":    ap.node.Version().String(),
		"handshake":  map[bool]string{true: "auto", false: "manual"}[ap.cfg.auto],
		"streams":    ap.cfg.streams,
		"name":       ap.cfg.name,
	}, nil
}

// parseAddrs parses multiaddrs, dropping a trailing /p2p/<id> component.
func parseAddrs(l []string) ([]ma.Multiaddr, error) {
	out := []ma.Multiaddr{}
	for _, s := range l {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bad multiaddr %q: %w", s, err)
		}
		if transport, _ := peer.SplitAddr(m); transport != nil {
			m = transport
		}
		out = append(out, m)
	}
	return out, nil
}

func entryFields(e *addressbook.PeerEntry) map[string]any {
	addrs := []string{}
	for _, m := range e.Multiaddrs {
		addrs = append(addrs, m.String())
	}
	var key any
	if len(e.PublicKey) > 0 {
		key = hex.EncodeToString(e.PublicKey)
	}
	meta := e.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return map[string]any{
		"peer_id":     e.PeerID.String(),
		"multiaddrs":  addrs,
		"public_key":  key,
		"metadata":    meta,
		"last_seen":   timeOrNil(e.LastSeen),
		"blacklisted": e.Blacklisted,
		"created_at":  timeOrNil(e.CreatedAt),
		"updated_at":  timeOrNil(e.UpdatedAt),
	}
}

func (ap *app) cmdAddPeer(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	addrStrs := a.StrList("addrs")
	var meta map[string]string
	a.Decode("metadata", &meta)
	if a.Err() != nil {
		return nil, a.Err()
	}
	addrs, err := parseAddrs(addrStrs)
	if err != nil {
		return nil, err
	}
	if err := ap.node.AddPeer(p, addrs, meta); err != nil {
		return nil, err
	}
	return map[string]any{"state": ap.node.ConnectionState(p).String()}, nil
}

func (ap *app) cmdRemovePeer(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	return nil, ap.node.RemovePeer(p)
}

func (ap *app) cmdGetPeer(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	e, err := ap.node.GetPeer(p)
	if err != nil {
		return nil, err
	}
	return map[string]any{"peer": entryFields(e)}, nil
}

func (ap *app) cmdListPeers(context.Context, *jsonl.Args) (map[string]any, error) {
	entries := ap.node.ListPeers()
	sort.Slice(entries, func(i, j int) bool { return entries[i].PeerID < entries[j].PeerID })
	peers := []map[string]any{}
	for _, e := range entries {
		peers = append(peers, entryFields(e))
	}
	return map[string]any{"peers": peers}, nil
}

func (ap *app) cmdPeerAddrs(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	addrs := []string{}
	for _, m := range ap.node.PeerAddrs(p) {
		addrs = append(addrs, m.String())
	}
	return map[string]any{"addrs": addrs}, nil
}

func (ap *app) cmdConnect(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	start := time.Now()
	var err error
	if a.Has("timeout_ms") {
		err = ap.node.ConnectCtx(ctx, p)
	} else {
		// Plain Connect, as applications call it: Glueberry applies its own 30 s dial timeout.
		err = ap.node.Connect(p)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"elapsed_ms": jsonl.Ms(time.Since(start)), "state": ap.node.ConnectionState(p).String()}, nil
}

func (ap *app) cmdDisconnect(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	return nil, ap.node.DisconnectCtx(ctx, p)
}

func (ap *app) cmdBlacklist(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	return nil, ap.node.BlacklistPeer(p)
}

func (ap *app) cmdUnblacklist(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	return nil, ap.node.UnblacklistPeer(p)
}

func (ap *app) cmdCancelReconnection(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	return nil, ap.node.CancelReconnection(p)
}

func (ap *app) cmdState(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	outbound, err := ap.node.IsOutbound(p)
	return map[string]any{
		"state":          ap.node.ConnectionState(p).String(),
		"is_outbound":    outbound,
		"outbound_error": errOrNil(err),
	}, nil
}

func (ap *app) cmdSend(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	stream := a.Str("stream")
	data := a.HexBytes("hex")
	if a.Err() != nil {
		return nil, a.Err()
	}
	start := time.Now()
	if err := ap.node.SendCtx(ctx, p, stream, data); err != nil {
		return nil, err
	}
	return map[string]any{"elapsed_ms": jsonl.Ms(time.Since(start)), "len": len(data)}, nil
}

// manyPayload is message seq of send_many: the 8-byte big-endian seq, then filler bytes where
// the byte at payload offset k is k % 251.
func manyPayload(seq uint64, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, seq)
	for k := 8; k < size; k++ {
		b[k] = byte(k % fillerModulus)
	}
	return b
}

func (ap *app) cmdSendMany(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	stream := a.Str("stream")
	count := a.Int("count")
	size := a.OptInt("size", 64)
	first := a.OptInt("start", 0)
	if a.Err() != nil {
		return nil, a.Err()
	}
	if size < 8 {
		return nil, errors.New("size must be at least 8 (the sequence number)")
	}
	if count < 0 || first < 0 {
		return nil, errors.New("count and start must not be negative")
	}
	h := sha256.New()
	start := time.Now()
	for i := int64(0); i < count; i++ {
		payload := manyPayload(uint64(first+i), int(size))
		if err := ap.node.SendCtx(ctx, p, stream, payload); err != nil {
			return nil, fmt.Errorf("message %d (sequence %d, %d sent before it): %w", i, first+i, i, err)
		}
		h.Write(payload)
	}
	elapsed := time.Since(start)
	res := map[string]any{
		"sent":       count,
		"bytes":      count * size,
		"sha256":     hex.EncodeToString(h.Sum(nil)),
		"elapsed_ms": jsonl.Ms(elapsed),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		res["messages_per_s"] = float64(count) / secs
		res["mib_per_s"] = float64(count*size) / secs / (1 << 20)
	}
	return res, nil
}

// cmdRTT sends count messages one at a time, each after the previous one's answer arrived on
// the same peer and stream (the other side echoes), and reports the round trips in microseconds.
func (ap *app) cmdRTT(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	stream := a.Str("stream")
	count := a.Int("count")
	size := a.OptInt("size", 1024)
	if a.Err() != nil {
		return nil, a.Err()
	}
	if size < 8 || count < 1 {
		return nil, errors.New("size must be at least 8 and count at least 1")
	}
	k := streamKey{p, stream}
	ch := make(chan struct{}, 1)
	ap.rttMu.Lock()
	if ap.rttWait == nil {
		ap.rttWait = map[streamKey]chan struct{}{}
	}
	ap.rttWait[k] = ch
	ap.rttMu.Unlock()
	defer func() {
		ap.rttMu.Lock()
		delete(ap.rttWait, k)
		ap.rttMu.Unlock()
	}()
	rtts := make([]float64, 0, count)
	start := time.Now()
	for i := int64(0); i < count; i++ {
		t := time.Now()
		if err := ap.node.SendCtx(ctx, p, stream, manyPayload(uint64(i), int(size))); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer to message %d: %w", i, ctx.Err())
		}
		rtts = append(rtts, float64(time.Since(t).Nanoseconds())/1e3)
	}
	elapsed := time.Since(start)
	sort.Float64s(rtts)
	pct := func(q float64) float64 { return rtts[min(len(rtts)-1, int(q*float64(len(rtts))))] }
	return map[string]any{
		"count": count, "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99),
		"max_us": rtts[len(rtts)-1], "round_trips_per_s": float64(count) / elapsed.Seconds(),
	}, nil
}

func (ap *app) cmdPrepareStreams(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	key := publicKey(a, "public_key")
	names := streamList(a, "streams", ap.cfg.streams)
	if a.Err() != nil {
		return nil, a.Err()
	}
	return map[string]any{"streams": names}, ap.node.PrepareStreams(p, key, names)
}

func (ap *app) cmdFinalizeHandshake(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	if err := ap.node.FinalizeHandshake(p); err != nil {
		return nil, err
	}
	return map[string]any{"state": ap.node.ConnectionState(p).String()}, nil
}

func (ap *app) cmdCompleteHandshake(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	key := publicKey(a, "public_key")
	names := streamList(a, "streams", ap.cfg.streams)
	if a.Err() != nil {
		return nil, a.Err()
	}
	if err := ap.node.CompleteHandshake(p, key, names); err != nil {
		return nil, err
	}
	return map[string]any{"streams": names, "state": ap.node.ConnectionState(p).String()}, nil
}

func (ap *app) cmdEstablishEncryptedStreams(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	key := publicKey(a, "public_key")
	names := streamList(a, "streams", ap.cfg.streams)
	if a.Err() != nil {
		return nil, a.Err()
	}
	if err := ap.node.EstablishEncryptedStreams(p, key, names); err != nil {
		return nil, err
	}
	return map[string]any{"streams": names, "state": ap.node.ConnectionState(p).String()}, nil
}

func (ap *app) cmdHsStatus(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	ap.hsMu.Lock()
	hp := ap.hs[p]
	ap.hsMu.Unlock()
	if hp == nil {
		return (&hsState{}).fields(), nil
	}
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.state.fields(), nil
}

func (ap *app) summaryLocked(k streamKey) *summary {
	s := ap.summaries[k]
	if s == nil {
		s = newSummary()
		ap.summaries[k] = s
	}
	return s
}

func (ap *app) cmdSummary(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	stream := a.Str("stream")
	reset := a.OptBool("reset", false)
	if a.Err() != nil {
		return nil, a.Err()
	}
	k := streamKey{p, stream}
	ap.sumMu.Lock()
	defer ap.sumMu.Unlock()
	s := ap.summaryLocked(k)
	res := s.fields()
	if reset {
		close(s.notify) // wake any waiter so it re-reads the new summary
		ap.summaries[k] = newSummary()
	}
	return res, nil
}

func (ap *app) cmdWaitMessages(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	stream := a.Str("stream")
	want := a.Int("count")
	if a.Err() != nil {
		return nil, a.Err()
	}
	k := streamKey{p, stream}
	start := time.Now()
	for {
		ap.sumMu.Lock()
		s := ap.summaryLocked(k)
		if s.count >= want {
			res := s.fields()
			ap.sumMu.Unlock()
			res["waited_ms"] = jsonl.Ms(time.Since(start))
			return res, nil
		}
		got, ch := s.count, s.notify
		ap.sumMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("timeout: %d of %d messages on %q after %.0f ms",
				got, want, stream, jsonl.Ms(time.Since(start)))
		}
	}
}

func streamStatsFields(s *glueberry.StreamStats) map[string]any {
	return map[string]any{
		"messages_sent":     s.MessagesSent,
		"messages_received": s.MessagesReceived,
		"bytes_sent":        s.BytesSent,
		"bytes_received":    s.BytesReceived,
		"last_sent_at":      timeOrNil(s.LastSentAt),
		"last_received_at":  timeOrNil(s.LastReceivedAt),
	}
}

func (ap *app) cmdStats(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p := a.Peer("peer_id")
	if a.Err() != nil {
		return nil, a.Err()
	}
	ap.decMu.Lock()
	decErrs := ap.decryptErrors[p]
	ap.decMu.Unlock()
	res := map[string]any{
		"messages_sent_total": ap.node.MessagesSent(p),
		"decrypt_errors":      decErrs,
		"node":                ap.stats.fields(),
		"has_stats":           false,
	}
	st := ap.node.PeerStatistics(p)
	if st == nil {
		return res, nil
	}
	ss := map[string]any{}
	for name, s := range st.StreamStats {
		ss[name] = streamStatsFields(s)
	}
	res["has_stats"] = true
	for k, v := range map[string]any{
		"connected":         st.Connected,
		"is_outbound":       st.IsOutbound,
		"connected_at":      timeOrNil(st.ConnectedAt),
		"total_connect_ms":  jsonl.Ms(st.TotalConnectTime),
		"messages_sent":     st.MessagesSent,
		"messages_received": st.MessagesReceived,
		"bytes_sent":        st.BytesSent,
		"bytes_received":    st.BytesReceived,
		"stream_stats":      ss,
		"last_message_at":   timeOrNil(st.LastMessageAt),
		"connection_count":  st.ConnectionCount,
		"failure_count":     st.FailureCount,
	} {
		res[k] = v
	}
	return res, nil
}

func (ap *app) cmdAddressBook(context.Context, *jsonl.Args) (map[string]any, error) {
	res := map[string]any{"path": ap.cfg.addressBook, "exists": false, "content": nil, "data": nil}
	b, err := os.ReadFile(ap.cfg.addressBook)
	if errors.Is(err, os.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	res["exists"] = true
	res["content"] = string(b)
	if json.Valid(b) {
		res["data"] = json.RawMessage(b)
	}
	return res, nil
}

func (ap *app) cmdDebugState(context.Context, *jsonl.Args) (map[string]any, error) {
	b, err := json.Marshal(ap.node.DumpState())
	if err != nil {
		return nil, err
	}
	return map[string]any{"state": json.RawMessage(b)}, nil
}

// ---------------------------------------------------------------------------------------------
// Events and messages from the node

func (ap *app) watchEvents() {
	for ev := range ap.node.Events() {
		p := ev.PeerID
		ap.out.Event("state", map[string]any{
			"peer_id":   p.String(),
			"state":     ev.State.String(),
			"error":     errOrNil(ev.Error),
			"timestamp": timeOrNil(ev.Timestamp),
		})
		if ap.room != nil && ev.State == glueberry.StateDisconnected {
			ap.room.peerGone(p)
		}
		if !ap.cfg.auto {
			continue
		}
		ap.hsMu.Lock()
		var dialled bool
		switch ev.State {
		case glueberry.StateConnecting, glueberry.StateReconnecting:
			ap.dials[p] = true
		case glueberry.StateConnected:
			dialled = ap.dials[p]
			delete(ap.dials, p)
		case glueberry.StateDisconnected, glueberry.StateCooldown:
			delete(ap.dials, p)
		}
		ap.hsMu.Unlock()
		switch {
		case dialled:
			ap.hsPeer(p).ch <- hsAction{kind: hsDialled}
		case ev.State == glueberry.StateDisconnected:
			ap.hsPeer(p).ch <- hsAction{kind: hsReset}
		}
	}
}

func (ap *app) watchMessages() {
	for msg := range ap.node.Messages() {
		p := msg.PeerID
		if msg.StreamName == streams.HandshakeStreamName {
			if ap.cfg.auto {
				ap.hsPeer(p).ch <- hsAction{kind: hsMessage, data: append([]byte(nil), msg.Data...)}
			} else {
				ap.out.Event("hs_message", map[string]any{
					"peer_id": p.String(), "len": len(msg.Data), "hex": hex.EncodeToString(msg.Data),
				})
			}
			continue
		}
		k := streamKey{p, msg.StreamName}
		ap.sumMu.Lock()
		ap.summaryLocked(k).add(msg.Data, msg.Timestamp)
		ap.sumMu.Unlock()
		ap.rttMu.Lock()
		if ch := ap.rttWait[k]; ch != nil {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		ap.rttMu.Unlock()
		if ap.cfg.onMessage == "report" || (ap.cfg.onMessage == "echo" && ap.cfg.report) {
			shown := msg.Data
			if len(shown) > maxHexReport {
				shown = shown[:maxHexReport]
			}
			sum := sha256.Sum256(msg.Data)
			f := map[string]any{
				"peer_id": p.String(), "stream": msg.StreamName, "len": len(msg.Data),
				"hex": hex.EncodeToString(shown), "sha256": hex.EncodeToString(sum[:]),
			}
			if len(msg.Data) >= 8 {
				f["seq"] = binary.BigEndian.Uint64(msg.Data[:8])
			}
			ap.out.Event("message", f)
		}
		if ap.cfg.onMessage == "echo" {
			ap.echo(k, append([]byte(nil), msg.Data...))
		}
		if ap.room != nil && msg.StreamName == chatStream {
			ap.room.deliver(p, msg.Data)
		}
	}
}

// echo queues data for sending back on the same peer and stream; one sender goroutine per
// (peer, stream) keeps the order.
func (ap *app) echo(k streamKey, data []byte) {
	ap.echoMu.Lock()
	ch := ap.echoes[k]
	if ch == nil {
		ch = make(chan []byte, 65536)
		ap.echoes[k] = ch
		go func() {
			for d := range ch {
				if err := ap.node.Send(k.peer, k.stream, d); err != nil {
					ap.out.Event("echo_error", map[string]any{
						"peer_id": k.peer.String(), "stream": k.stream, "len": len(d), "error": err.Error(),
					})
				}
			}
		}()
	}
	ap.echoMu.Unlock()
	ch <- data
}

func (ap *app) onDecryptionError(p peer.ID, err error) {
	ap.decMu.Lock()
	ap.decryptErrors[p]++
	n := ap.decryptErrors[p]
	ap.decMu.Unlock()
	ap.out.Event("decrypt_error", map[string]any{"peer_id": p.String(), "error": err.Error(), "count": n})
}

// ---------------------------------------------------------------------------------------------
// Automatic handshake

func (ap *app) hsPeer(p peer.ID) *hsPeer {
	ap.hsMu.Lock()
	defer ap.hsMu.Unlock()
	hp := ap.hs[p]
	if hp == nil {
		hp = &hsPeer{ch: make(chan hsAction, 1024)}
		ap.hs[p] = hp
		go ap.hsLoop(p, hp)
	}
	return hp
}

func (ap *app) hsLoop(p peer.ID, hp *hsPeer) {
	for {
		select {
		case <-ap.ctx.Done():
			return
		case act := <-hp.ch:
			hp.mu.Lock()
			switch act.kind {
			case hsDialled:
				ap.hsDialled(p, &hp.state)
			case hsMessage:
				ap.hsReceive(p, &hp.state, act.data)
			case hsReset:
				hp.state = hsState{}
			}
			hp.mu.Unlock()
		}
	}
}

func (ap *app) hsEvent(name string, p peer.ID, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["peer_id"] = p.String()
	ap.out.Event(name, fields)
}

func (ap *app) hsError(p peer.ID, step string, err error) {
	ap.hsEvent("hs_error", p, map[string]any{"step": step, "error": err.Error()})
}

// hsParseError reports a handshake message that is ignored, with its bytes.
func (ap *app) hsParseError(p peer.ID, err error, data []byte) {
	ap.hsEvent("hs_error", p, map[string]any{"step": "parse", "error": err.Error(), "hex": hex.EncodeToString(data)})
}

func (ap *app) hsSend(p peer.ID, kind string, data []byte) bool {
	if err := ap.node.Send(p, streams.HandshakeStreamName, data); err != nil {
		ap.hsError(p, "send_"+kind, err)
		return false
	}
	ap.hsEvent("hs_sent", p, map[string]any{"kind": kind, "hex": hex.EncodeToString(data)})
	return true
}

func (ap *app) delay() {
	if ap.cfg.hsDelay > 0 {
		time.Sleep(ap.cfg.hsDelay)
	}
}

// sendHelloAndKey sends Hello then PubKey (once per connection).
func (ap *app) sendHelloAndKey(p peer.ID, st *hsState) {
	st.sentHello, st.sentPubKey = true, true
	ap.delay()
	hello := append([]byte{msgHello}, ap.cfg.name...)
	if !ap.hsSend(p, "hello", hello) {
		return
	}
	ap.hsSend(p, "pubkey", append([]byte{msgPubKey}, ap.node.PublicKey()...))
}

func (ap *app) hsDialled(p peer.ID, st *hsState) {
	if st.sentPubKey {
		return
	}
	ap.sendHelloAndKey(p, st)
}

func (ap *app) finalize(p peer.ID, st *hsState) {
	st.finalized = true
	if err := ap.node.FinalizeHandshake(p); err != nil {
		ap.hsError(p, "finalize", err)
		return
	}
	ap.hsEvent("hs_finalized", p, nil)
}

func (ap *app) hsReceive(p peer.ID, st *hsState, data []byte) {
	if len(data) == 0 {
		ap.hsParseError(p, errors.New("empty handshake message"), data)
		return
	}
	switch data[0] {
	case msgHello:
		name := data[1:]
		if len(name) > maxNameLen {
			ap.hsParseError(p, fmt.Errorf("hello name is %d bytes (at most %d)", len(name), maxNameLen), data)
			return
		}
		dup := st.gotHello
		ap.hsEvent("hs_hello", p, map[string]any{
			"name": string(name), "name_hex": hex.EncodeToString(name), "duplicate": dup,
		})
		if dup {
			return
		}
		st.gotHello, st.peerName = true, string(name)
		if !st.sentPubKey {
			ap.sendHelloAndKey(p, st)
		}
	case msgPubKey:
		if len(data) != 1+ed25519.PublicKeySize {
			ap.hsParseError(p, fmt.Errorf("pubkey message is %d bytes (want %d)", len(data), 1+ed25519.PublicKeySize), data)
			return
		}
		key := append([]byte(nil), data[1:]...)
		dup := st.gotPubKey
		ap.hsEvent("hs_pubkey", p, map[string]any{"public_key": hex.EncodeToString(key), "duplicate": dup})
		if dup {
			return
		}
		st.gotPubKey, st.peerKey = true, key
		ap.delay()
		if err := ap.node.PrepareStreams(p, ed25519.PublicKey(key), ap.cfg.streams); err != nil {
			ap.hsError(p, "prepare", err)
			return
		}
		st.prepared = true
		ap.hsEvent("hs_prepared", p, map[string]any{"streams": ap.cfg.streams})
		if !ap.cfg.noComplete && !st.sentComplete {
			st.sentComplete = true
			ap.hsSend(p, "complete", []byte{msgComplete})
		}
		if st.gotComplete && !st.finalized {
			ap.finalize(p, st)
		}
	case msgComplete:
		if len(data) != 1 {
			ap.hsParseError(p, fmt.Errorf("complete message is %d bytes (want 1)", len(data)), data)
			return
		}
		dup := st.gotComplete
		ap.hsEvent("hs_complete", p, map[string]any{"duplicate": dup, "prepared": st.prepared})
		if dup {
			return
		}
		st.gotComplete = true
		if st.prepared && !st.finalized {
			ap.finalize(p, st)
		}
	default:
		ap.hsParseError(p, fmt.Errorf("unknown handshake message type 0x%02x", data[0]), data)
	}
}

// ---------------------------------------------------------------------------------------------
// libp2p connection tracing (--trace-conns). Glueberry registers no network notifiee and does
// not expose its libp2p host, so this reads the Node's unexported host field. Diagnostic only:
// it shows what happens below Glueberry (which never reports a dropped connection itself).

func libp2pNetwork(node *glueberry.Node) (network.Network, error) {
	f := reflect.ValueOf(node).Elem().FieldByName("host")
	if !f.IsValid() {
		return nil, errors.New("glueberry.Node has no field \"host\" (library changed?)")
	}
	h, ok := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*protocol.Host)
	if !ok || h == nil {
		return nil, fmt.Errorf("glueberry.Node.host is %s, not *protocol.Host", f.Type())
	}
	return h.Network(), nil
}

func (ap *app) traceConns() error {
	nw, err := libp2pNetwork(ap.node)
	if err != nil {
		return err
	}
	fields := func(n network.Network, c network.Conn) map[string]any {
		return map[string]any{
			"peer_id":     c.RemotePeer().String(),
			"conn_id":     c.ID(),
			"direction":   jsonl.DirName(c.Stat().Direction),
			"local_addr":  c.LocalMultiaddr().String(),
			"remote_addr": c.RemoteMultiaddr().String(),
			"conns_now":   len(n.ConnsToPeer(c.RemotePeer())),
		}
	}
	nw.Notify(&network.NotifyBundle{
		ConnectedF:    func(n network.Network, c network.Conn) { ap.out.Event("conn_opened", fields(n, c)) },
		DisconnectedF: func(n network.Network, c network.Conn) { ap.out.Event("conn_closed", fields(n, c)) },
	})
	return nil
}

// ---------------------------------------------------------------------------------------------
// Main

type flags struct {
	seed, listen, addressBook, name, handshake, streams, onMessage, logLevel string
	report, noComplete, traceConns, streamsSet                               bool
	hsDelayMs, handshakeTimeoutMs, cooldownMs, reconnectBaseMs               int64
	reconnectMaxMs                                                           int64
	reconnectMaxAttempts, maxMessageSize, messageBufferSize, eventBufferSize int
}

func parseFlags() *flags {
	f := &flags{}
	flag.StringVar(&f.seed, "seed", "", "Ed25519 seed, 64 hex characters (default: random)")
	flag.StringVar(&f.listen, "listen", "/ip4/127.0.0.1/tcp/0", "listen multiaddrs, comma separated")
	flag.StringVar(&f.addressBook, "addressbook", "", "address book file (default: addressbook.json in a temporary directory removed at exit)")
	flag.StringVar(&f.name, "name", "", "name sent in the Hello (auto handshake), at most 64 bytes")
	flag.StringVar(&f.handshake, "handshake", "auto", "auto | manual")
	flag.StringVar(&f.streams, "streams", "messages", "encrypted stream names prepared by the auto handshake (comma list; default of the stream commands)")
	flag.BoolVar(&f.noComplete, "hs-no-complete", false, "auto handshake: never send Complete")
	flag.Int64Var(&f.hsDelayMs, "hs-delay-ms", 0, "auto handshake: sleep this long before each reaction that sends")
	flag.StringVar(&f.onMessage, "on-message", "report", "report | echo | count | room (a chat room server on the stream \"chat\")")
	flag.BoolVar(&f.report, "report", false, "with --on-message echo: also print a message event")
	flag.BoolVar(&f.traceConns, "trace-conns", false, "emit conn_opened / conn_closed events for libp2p connections (below Glueberry)")
	flag.StringVar(&f.logLevel, "log", "info", "Glueberry log level on stderr: debug | info | warn | error | none")
	flag.Int64Var(&f.handshakeTimeoutMs, "handshake-timeout-ms", 0, "Config.HandshakeTimeout (0: library default 30 s)")
	flag.Int64Var(&f.cooldownMs, "failed-handshake-cooldown-ms", 0, "Config.FailedHandshakeCooldown (0: default 1 min)")
	flag.Int64Var(&f.reconnectBaseMs, "reconnect-base-delay-ms", 0, "Config.ReconnectBaseDelay (0: default 1 s)")
	flag.Int64Var(&f.reconnectMaxMs, "reconnect-max-delay-ms", 0, "Config.ReconnectMaxDelay (0: default 5 min)")
	flag.IntVar(&f.reconnectMaxAttempts, "reconnect-max-attempts", 0, "Config.ReconnectMaxAttempts (0: default 10; the library has no 'unlimited')")
	flag.IntVar(&f.maxMessageSize, "max-message-size", 0, "Config.MaxMessageSize in bytes (0: default 1 MiB)")
	flag.IntVar(&f.messageBufferSize, "message-buffer-size", 0, "Config.MessageBufferSize (0: default 1000)")
	flag.IntVar(&f.eventBufferSize, "event-buffer-size", 0, "Config.EventBufferSize (0: default 100)")
	flag.Parse()
	flag.Visit(func(fl *flag.Flag) { f.streamsSet = f.streamsSet || fl.Name == "streams" })
	return f
}

func privateKey(seed string) (ed25519.PrivateKey, error) {
	if seed == "" {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		return key, err
	}
	raw, err := hex.DecodeString(seed)
	if err != nil || len(raw) != ed25519.SeedSize {
		return nil, errors.New("--seed must be 64 hex characters (a 32-byte Ed25519 seed)")
	}
	return ed25519.NewKeyFromSeed(raw), nil
}

func buildSettings(f *flags) (settings, error) {
	s := settings{name: f.name, noComplete: f.noComplete, onMessage: f.onMessage, report: f.report}
	switch f.handshake {
	case "auto":
		s.auto = true
	case "manual":
	default:
		return s, fmt.Errorf("unknown --handshake %q (auto or manual)", f.handshake)
	}
	switch f.onMessage {
	case "report", "echo", "count", "room":
	default:
		return s, fmt.Errorf("unknown --on-message %q (report, echo, count or room)", f.onMessage)
	}
	if f.onMessage == "room" && !f.streamsSet {
		f.streams = chatStream
	}
	if len(f.name) > maxNameLen {
		return s, fmt.Errorf("--name is %d bytes (at most %d)", len(f.name), maxNameLen)
	}
	for _, n := range strings.Split(f.streams, ",") {
		if n = strings.TrimSpace(n); n != "" {
			s.streams = append(s.streams, n)
		}
	}
	if err := glueberry.ValidateStreamNames(s.streams, glueberry.DefaultMaxStreamNameLength); err != nil {
		return s, fmt.Errorf("--streams: %w", err)
	}
	if f.onMessage == "room" && !slices.Contains(s.streams, chatStream) {
		return s, fmt.Errorf("--on-message room needs the stream %q in --streams", chatStream)
	}
	if f.hsDelayMs < 0 {
		return s, errors.New("--hs-delay-ms must not be negative")
	}
	s.hsDelay = time.Duration(f.hsDelayMs) * time.Millisecond
	if _, ok := logLevels[f.logLevel]; !ok {
		return s, fmt.Errorf("unknown --log %q", f.logLevel)
	}
	s.addressBook = f.addressBook
	if s.addressBook == "" {
		dir, err := os.MkdirTemp("", "glueberry-peer-")
		if err != nil {
			return s, err
		}
		s.tempDir = dir
		s.addressBook = filepath.Join(dir, "addressbook.json")
	}
	return s, nil
}

func msDuration(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

func main() {
	f := parseFlags()
	log.SetOutput(os.Stderr)
	log.SetPrefix("glueberry-peer: ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	key, err := privateKey(f.seed)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := buildSettings(f)
	if err != nil {
		log.Fatal(err)
	}
	cleanup := func() {
		if cfg.tempDir != "" {
			_ = os.RemoveAll(cfg.tempDir)
		}
	}
	var listen []ma.Multiaddr
	for _, s := range strings.Split(f.listen, ",") {
		m, err := ma.NewMultiaddr(strings.TrimSpace(s))
		if err != nil {
			cleanup()
			log.Fatalf("--listen: bad multiaddr %q: %v", s, err)
		}
		listen = append(listen, m)
	}

	out := jsonl.NewOutput(os.Stdout)
	out.TimeMs = true
	ctx, cancel := context.WithCancel(context.Background())
	ap := &app{
		out: out, ctx: ctx, cfg: cfg, stats: &counters{},
		summaries:     map[streamKey]*summary{},
		hs:            map[peer.ID]*hsPeer{},
		dials:         map[peer.ID]bool{},
		echoes:        map[streamKey]chan []byte{},
		decryptErrors: map[peer.ID]int64{},
	}
	node, err := glueberry.New(&glueberry.Config{
		PrivateKey:              key,
		AddressBookPath:         cfg.addressBook,
		ListenAddrs:             listen,
		HandshakeTimeout:        msDuration(f.handshakeTimeoutMs),
		FailedHandshakeCooldown: msDuration(f.cooldownMs),
		ReconnectBaseDelay:      msDuration(f.reconnectBaseMs),
		ReconnectMaxDelay:       msDuration(f.reconnectMaxMs),
		ReconnectMaxAttempts:    f.reconnectMaxAttempts,
		MaxMessageSize:          f.maxMessageSize,
		MessageBufferSize:       f.messageBufferSize,
		EventBufferSize:         f.eventBufferSize,
		Logger:                  stderrLogger{level: logLevels[f.logLevel]},
		Metrics:                 ap.stats,
		OnDecryptionError:       ap.onDecryptionError,
	})
	if err != nil {
		cleanup()
		log.Fatalf("glueberry.New: %v", err)
	}
	ap.node = node
	if cfg.onMessage == "room" {
		ap.room = newRoomServer(ap)
		go ap.room.run()
	}
	if f.traceConns {
		if err := ap.traceConns(); err != nil {
			cleanup()
			log.Fatalf("--trace-conns: %v", err)
		}
	}
	go ap.watchEvents()
	go ap.watchMessages()
	if err := node.Start(); err != nil {
		cleanup()
		log.Fatalf("Start: %v", err)
	}
	info, _ := ap.cmdInfo(ctx, nil)
	info["pid"] = os.Getpid()
	info["addressbook"] = cfg.addressBook
	info["on_message"] = cfg.onMessage
	out.Event("ready", info)

	jsonl.Serve(ctx, os.Stdin, out, ap.commands(), func() {
		cancel()
		if err := node.Stop(); err != nil {
			log.Printf("Stop: %v", err)
		}
		cleanup()
	})
}
