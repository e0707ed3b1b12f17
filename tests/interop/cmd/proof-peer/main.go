// Command proof-peer is a Glueberry service (github.com/blockberries/glueberry v1.2.10) with an
// application handshake of its own, not Hello/PubKey/Complete: the "proof" handshake, which the
// tests reach from js-client (Node and Chromium) and from the Python gateway client to show that a
// browser can run any application's handshake through the gateway. Its messages, on the
// Glueberry "handshake" stream (first byte: the type):
//
//	INTRO  = 0x21 ‖ version (1 byte, 2) ‖ nonce (16 bytes) ‖ Ed25519 public key (32) ‖ name length (1) ‖ name (≤ 32, UTF-8)
//	PROOF  = 0x22 ‖ Ed25519 signature (64) over
//	         "glueberry-proof-v2" ‖ sender nonce ‖ receiver nonce ‖ sender key ‖ receiver key
//	READY  = 0x23 ‖ the stream names the sender prepared, comma-separated (UTF-8)
//	REFUSE = 0x2f ‖ reason (UTF-8): the sender gives up on this handshake
//
// The dialler (the browser) speaks first: the Go listener learns of a connection only from its
// first message. On INTRO this service checks the version and that the key is the dialler's peer
// ID, then answers INTRO and PROOF. On the dialler's PROOF (its signature checked) it calls
// PrepareStreams(peer, key, streams) and sends READY; on the dialler's READY it calls
// FinalizeHandshake. Then it sends "welcome <name>" on the last stream and echoes every message
// as "<stream>:<text>" on the stream it came on.
//
// --impostor answers with a key that is not its peer ID's (signed with that other key): a client
// must refuse it. --version N speaks version N (a client that wants 2 refuses it).
//
// Output: JSON lines (internal/jsonl), first {"event": "ready", "peer_id", "addrs", ...}, then
// hs_* events and {"event": "message", "peer_id", "stream", "text"}. Commands on stdin: "info",
// "send" {"peer_id", "stream", "text"}.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/blockberries/glueberry"
	"github.com/blockberries/glueberry/pkg/streams"
	"github.com/glueberry-bridge/interop/internal/jsonl"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

const (
	msgIntro  byte = 0x21
	msgProof  byte = 0x22
	msgReady  byte = 0x23
	msgRefuse byte = 0x2f

	nonceLen    = 16
	maxNameLen  = 32
	proofDomain = "glueberry-proof-v2"
)

// intro is a decoded INTRO.
type intro struct {
	version byte
	nonce   []byte
	key     ed25519.PublicKey
	name    string
}

func encodeIntro(version byte, nonce []byte, key ed25519.PublicKey, name string) []byte {
	out := []byte{msgIntro, version}
	out = append(out, nonce...)
	out = append(out, key...)
	out = append(out, byte(len(name)))
	return append(out, name...)
}

func decodeIntro(data []byte) (intro, error) {
	const head = 1 + 1 + nonceLen + ed25519.PublicKeySize + 1
	if len(data) < head {
		return intro{}, fmt.Errorf("INTRO of %d bytes (at least %d)", len(data), head)
	}
	n := int(data[head-1])
	if n > maxNameLen || len(data) != head+n {
		return intro{}, fmt.Errorf("INTRO name length %d does not match its %d bytes", n, len(data))
	}
	return intro{
		version: data[1],
		nonce:   bytes.Clone(data[2 : 2+nonceLen]),
		key:     ed25519.PublicKey(bytes.Clone(data[2+nonceLen : 2+nonceLen+ed25519.PublicKeySize])),
		name:    string(data[head:]),
	}, nil
}

// proofMessage is what a PROOF signs.
func proofMessage(senderNonce, receiverNonce []byte, senderKey, receiverKey ed25519.PublicKey) []byte {
	var b bytes.Buffer
	b.WriteString(proofDomain)
	for _, part := range [][]byte{senderNonce, receiverNonce, senderKey, receiverKey} {
		b.Write(part)
	}
	return b.Bytes()
}

// session is one peer's handshake state.
type session struct {
	peerIntro  *intro
	ourNonce   []byte
	prepared   bool
	finalized  bool
	refused    bool
	gotReady   bool
	peerStream []string
}

type app struct {
	node    *glueberry.Node
	out     *jsonl.Output
	signKey ed25519.PrivateKey // the key the handshake speaks for (another one with --impostor)
	version byte
	name    string
	streams []string

	mu       sync.Mutex
	sessions map[peer.ID]*session
}

func (ap *app) event(name string, p peer.ID, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["peer_id"] = p.String()
	ap.out.Event(name, fields)
}

func (ap *app) send(p peer.ID, stream string, data []byte) bool {
	if err := ap.node.Send(p, stream, data); err != nil {
		ap.event("hs_error", p, map[string]any{"step": "send " + stream, "error": err.Error()})
		return false
	}
	return true
}

func (ap *app) refuse(p peer.ID, s *session, reason string) {
	s.refused = true
	ap.event("hs_refused", p, map[string]any{"reason": reason})
	ap.send(p, streams.HandshakeStreamName, append([]byte{msgRefuse}, reason...))
}

// handshake handles one message of the handshake stream (under ap.mu).
func (ap *app) handshake(p peer.ID, data []byte) {
	if len(data) == 0 {
		ap.event("hs_error", p, map[string]any{"step": "parse", "error": "empty message"})
		return
	}
	s := ap.sessions[p]
	if data[0] == msgIntro || s == nil {
		s = &session{} // an INTRO starts the handshake over (a reopened session)
		ap.sessions[p] = s
	}
	if s.refused {
		return
	}
	switch data[0] {
	case msgIntro:
		in, err := decodeIntro(data)
		if err != nil {
			ap.refuse(p, s, err.Error())
			return
		}
		if in.version != ap.version {
			ap.refuse(p, s, fmt.Sprintf("version %d is not spoken here (%d is)", in.version, ap.version))
			return
		}
		pub, err := crypto.UnmarshalEd25519PublicKey(in.key)
		if err != nil {
			ap.refuse(p, s, "bad key")
			return
		}
		if id, err := peer.IDFromPublicKey(pub); err != nil || id != p {
			ap.refuse(p, s, "the key is not the sender's peer ID")
			return
		}
		s.peerIntro = &in
		s.ourNonce = make([]byte, nonceLen)
		_, _ = rand.Read(s.ourNonce)
		ap.event("hs_intro", p, map[string]any{"version": in.version, "name": in.name})
		ours := ap.signKey.Public().(ed25519.PublicKey)
		if !ap.send(p, streams.HandshakeStreamName, encodeIntro(ap.version, s.ourNonce, ours, ap.name)) {
			return
		}
		sig := ed25519.Sign(ap.signKey, proofMessage(s.ourNonce, in.nonce, ours, in.key))
		ap.send(p, streams.HandshakeStreamName, append([]byte{msgProof}, sig...))
	case msgProof:
		if s.peerIntro == nil || len(data) != 1+ed25519.SignatureSize {
			ap.refuse(p, s, "PROOF out of turn or malformed")
			return
		}
		in := s.peerIntro
		ours := ap.signKey.Public().(ed25519.PublicKey)
		if !ed25519.Verify(in.key, proofMessage(in.nonce, s.ourNonce, in.key, ours), data[1:]) {
			ap.refuse(p, s, "bad signature")
			return
		}
		if err := ap.node.PrepareStreams(p, in.key, ap.streams); err != nil {
			ap.event("hs_error", p, map[string]any{"step": "prepare", "error": err.Error()})
			return
		}
		s.prepared = true
		ap.event("hs_prepared", p, map[string]any{"streams": ap.streams})
		ap.send(p, streams.HandshakeStreamName, append([]byte{msgReady}, strings.Join(ap.streams, ",")...))
		ap.maybeFinalize(p, s)
	case msgReady:
		s.gotReady = true
		s.peerStream = strings.Split(string(data[1:]), ",")
		ap.maybeFinalize(p, s)
	case msgRefuse:
		s.refused = true
		ap.event("hs_peer_refused", p, map[string]any{"reason": string(data[1:])})
	default:
		ap.event("hs_error", p, map[string]any{"step": "parse", "error": fmt.Sprintf("unknown type 0x%02x", data[0])})
	}
}

func (ap *app) maybeFinalize(p peer.ID, s *session) {
	if !s.prepared || !s.gotReady || s.finalized {
		return
	}
	s.finalized = true
	if err := ap.node.FinalizeHandshake(p); err != nil {
		ap.event("hs_error", p, map[string]any{"step": "finalize", "error": err.Error()})
		return
	}
	ap.event("hs_finalized", p, map[string]any{"peer_streams": s.peerStream, "name": s.peerIntro.name})
	last := ap.streams[len(ap.streams)-1]
	ap.send(p, last, []byte("welcome "+s.peerIntro.name))
}

func (ap *app) watchMessages() {
	for msg := range ap.node.Messages() {
		p := msg.PeerID
		if msg.StreamName == streams.HandshakeStreamName {
			ap.mu.Lock()
			ap.handshake(p, msg.Data)
			ap.mu.Unlock()
			continue
		}
		ap.event("message", p, map[string]any{"stream": msg.StreamName, "text": string(msg.Data)})
		ap.send(p, msg.StreamName, append([]byte(msg.StreamName+":"), msg.Data...))
	}
}

func (ap *app) watchEvents() {
	for ev := range ap.node.Events() {
		ap.event("state", ev.PeerID, map[string]any{"state": ev.State.String()})
		if ev.State == glueberry.StateDisconnected {
			ap.mu.Lock()
			delete(ap.sessions, ev.PeerID)
			ap.mu.Unlock()
		}
	}
}

func (ap *app) info(context.Context, *jsonl.Args) (map[string]any, error) {
	addrs := []string{}
	for _, a := range ap.node.Addrs() {
		addrs = append(addrs, a.String())
	}
	return map[string]any{
		"peer_id":    ap.node.PeerID().String(),
		"addrs":      addrs,
		"public_key": hex.EncodeToString(ap.node.PublicKey()),
		"streams":    ap.streams,
		"name":       ap.name,
	}, nil
}

func (ap *app) cmdSend(_ context.Context, a *jsonl.Args) (map[string]any, error) {
	p, stream, text := a.Peer("peer_id"), a.Str("stream"), a.Str("text")
	if err := a.Err(); err != nil {
		return nil, err
	}
	return map[string]any{}, ap.node.Send(p, stream, []byte(text))
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(msg string, kv ...any) {
	log.Println(append([]any{"WARN", msg}, kv...)...)
}
func (quietLogger) Error(msg string, kv ...any) {
	log.Println(append([]any{"ERROR", msg}, kv...)...)
}

func main() {
	seed := flag.String("seed", "", "Ed25519 seed, 64 hex characters (default: random)")
	listen := flag.String("listen", "/ip4/127.0.0.1/tcp/0", "listen multiaddr")
	name := flag.String("name", "proof-service", "the name in our INTRO (at most 32 bytes)")
	streamList := flag.String("streams", "alpha,beta,gamma", "encrypted streams prepared (comma list)")
	version := flag.Int("version", 2, "the handshake version spoken")
	impostor := flag.Bool("impostor", false, "answer with a key that is not our peer ID's")
	flag.Parse()
	log.SetOutput(os.Stderr)
	log.SetPrefix("proof-peer: ")

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	if *seed == "" {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	} else if raw, err := hex.DecodeString(*seed); err == nil && len(raw) == ed25519.SeedSize {
		key = ed25519.NewKeyFromSeed(raw)
	} else {
		log.Fatal(errors.New("--seed must be 64 hex characters"))
	}
	if len(*name) > maxNameLen || *version < 0 || *version > 255 {
		log.Fatal("--name is at most 32 bytes; --version is 0-255")
	}
	addr, err := ma.NewMultiaddr(*listen)
	if err != nil {
		log.Fatalf("--listen: %v", err)
	}
	dir, err := os.MkdirTemp("", "proof-peer-")
	if err != nil {
		log.Fatal(err)
	}
	node, err := glueberry.New(&glueberry.Config{
		PrivateKey:      key,
		AddressBookPath: filepath.Join(dir, "addressbook.json"),
		ListenAddrs:     []ma.Multiaddr{addr},
		Logger:          quietLogger{},
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		log.Fatalf("glueberry.New: %v", err)
	}
	ap := &app{
		node: node, out: jsonl.NewOutput(os.Stdout), signKey: key, version: byte(*version),
		name: *name, streams: strings.Split(*streamList, ","), sessions: map[peer.ID]*session{},
	}
	ap.out.TimeMs = true
	if *impostor {
		_, ap.signKey, _ = ed25519.GenerateKey(rand.Reader)
	}
	go ap.watchEvents()
	go ap.watchMessages()
	if err := node.Start(); err != nil {
		log.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, _ := ap.info(ctx, nil)
	ready["pid"] = os.Getpid()
	ready["impostor"] = *impostor
	ap.out.Event("ready", ready)
	jsonl.Serve(ctx, os.Stdin, ap.out, map[string]jsonl.Handler{"info": ap.info, "send": ap.cmdSend}, func() {
		cancel()
		if err := node.Stop(); err != nil {
			log.Printf("Stop: %v", err)
		}
		_ = os.RemoveAll(dir) // Serve exits the process: no deferred call would run
	})
}
