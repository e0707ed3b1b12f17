package main

// --on-message room: a small chat room server on the encrypted stream "chat", so that a web
// chat page (or any Glueberry client) can talk to a real Go Glueberry backend. The protocol is
// described in README.md ("Chat rooms").
//
// Concurrency: the Messages() and Events() loops only hand their input to one worker goroutine
// (roomServer.run), which owns every room and never blocks on the network: what it sends goes
// into a bounded outbox per peer, drained by that peer's own sender goroutine with Node.Send.
// A slow or vanished member therefore delays nobody but itself, and each member receives the
// room's traffic in the order the worker produced it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"sort"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/glueberry-bridge/interop/internal/jsonl"
	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	chatStream = "chat" // the encrypted stream the room server speaks on

	roomMaxRooms   = 100      // rooms at once (an empty room is kept for its history until the slot is needed)
	roomMaxMembers = 200      // members per room
	roomHistoryLen = 50       // messages replayed in a welcome
	roomDedupLen   = 1000     // (sender, id) pairs remembered per room
	roomMaxName    = 32       // characters in a room name or a nick
	roomMaxText    = 2000     // characters in a message text
	roomMaxID      = 64       // characters in a message id
	roomMaxInput   = 64 << 10 // bytes in one client message
	roomInputQueue = 8192     // client messages and disconnections waiting for the worker
	roomOutboxLen  = 1024     // messages waiting to be sent to one peer
)

// ---------------------------------------------------------------------------------------------
// Wire messages (backend → client). Structs keep "t" first and the field order stable.

type chatMember struct {
	Peer string `json:"peer"`
	Nick string `json:"nick"`
}

type chatMsg struct {
	T    string `json:"t"`
	Room string `json:"room"`
	ID   string `json:"id"`
	From string `json:"from"`
	Nick string `json:"nick"`
	Text string `json:"text"`
	TS   int64  `json:"ts"`
}

type chatWelcome struct {
	T       string       `json:"t"`
	Room    string       `json:"room"`
	Members []chatMember `json:"members"`
	History []chatMsg    `json:"history"`
}

type chatPresence struct {
	T    string `json:"t"` // joined | left
	Room string `json:"room"`
	Peer string `json:"peer"`
	Nick string `json:"nick"`
}

// chatError tells one client what was wrong with its message. Besides the "text" for people, it
// carries a "code" for programs (as the Python demo backend does, so that the web page can act on
// it) and, when known, the "room" and the message "id" concerned.
type chatError struct {
	T    string `json:"t"`
	Code string `json:"code"`
	Text string `json:"text"`
	Room string `json:"room,omitempty"`
	ID   string `json:"id,omitempty"`
}

// Error codes.
const (
	errBadRequest   = "bad_request"    // not JSON, not an object, unknown "t", a field missing or invalid
	errNotMember    = "not_member"     // "msg" to a room the peer is not in: join, then send again
	errRoomFull     = "room_full"      // the room has roomMaxMembers members
	errTooManyRooms = "too_many_rooms" // roomMaxRooms rooms in use and none empty
)

// chatJSON encodes one wire message (no HTML escaping, no trailing newline).
func chatJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		log.Printf("room: cannot encode %T: %v", v, err)
		return nil
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// ---------------------------------------------------------------------------------------------
// Client requests (client → backend) and their validation.

type chatRequest struct {
	t, room, nick, id, text string
}

func chatField(m map[string]json.RawMessage, k string) (string, error) {
	raw, ok := m[k]
	if !ok {
		return "", fmt.Errorf("missing %q", k)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%q must be a string", k)
	}
	return s, nil
}

func validRoomName(s string) error {
	if len(s) < 1 || len(s) > roomMaxName {
		return fmt.Errorf("room name must be 1 to %d characters", roomMaxName)
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return errors.New("room name may only contain a-z, 0-9 and -")
		}
	}
	return nil
}

func validNick(s string) error {
	if n := utf8.RuneCountInString(s); n < 1 || n > roomMaxName {
		return fmt.Errorf("nick must be 1 to %d characters", roomMaxName)
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("nick contains a non-printable character (U+%04X)", c)
		}
	}
	return nil
}

// parseChat decodes and validates one client message; the error text is what the client is told.
// With an error, the request holds the room and id only if they were valid.
func parseChat(data []byte) (chatRequest, error) {
	var req chatRequest
	if len(data) > roomMaxInput {
		return req, fmt.Errorf("message too large (%d bytes, at most %d)", len(data), roomMaxInput)
	}
	if !utf8.Valid(data) {
		return req, errors.New("bad JSON: not UTF-8")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return req, fmt.Errorf("bad JSON: %v", err)
	}
	if m == nil {
		return req, errors.New("bad JSON: expected an object")
	}
	var err error
	if req.t, err = chatField(m, "t"); err != nil {
		return req, err
	}
	switch req.t {
	case "join", "msg", "leave":
	default:
		return req, fmt.Errorf("unknown message type %q", req.t)
	}
	room, err := chatField(m, "room")
	if err != nil {
		return req, err
	}
	if err := validRoomName(room); err != nil {
		return req, err
	}
	req.room = room
	switch req.t {
	case "join":
		if req.nick, err = chatField(m, "nick"); err != nil {
			return req, err
		}
		if err := validNick(req.nick); err != nil {
			return req, err
		}
	case "msg":
		id, err := chatField(m, "id")
		if err != nil {
			return req, err
		}
		if n := utf8.RuneCountInString(id); n < 1 || n > roomMaxID {
			return req, fmt.Errorf("id must be 1 to %d characters", roomMaxID)
		}
		req.id = id
		if req.text, err = chatField(m, "text"); err != nil {
			return req, err
		}
		if n := utf8.RuneCountInString(req.text); n > roomMaxText {
			return req, fmt.Errorf("text is %d characters (at most %d)", n, roomMaxText)
		}
	}
	return req, nil
}

// ---------------------------------------------------------------------------------------------
// Rooms

type roomMember struct {
	peer peer.ID
	nick string
}

type dedupKey struct {
	from peer.ID
	id   string
}

type room struct {
	name       string
	members    []*roomMember // in join order
	history    []chatMsg     // the last roomHistoryLen messages, oldest first
	seen       map[dedupKey]struct{}
	seenRing   []dedupKey // the same keys, oldest overwritten first
	seenNext   int
	lastActive time.Time
}

func newRoom(name string) *room {
	return &room{name: name, seen: map[dedupKey]struct{}{}, lastActive: time.Now()}
}

func (r *room) member(p peer.ID) *roomMember {
	for _, m := range r.members {
		if m.peer == p {
			return m
		}
	}
	return nil
}

func (r *room) remove(p peer.ID) *roomMember {
	for i, m := range r.members {
		if m.peer == p {
			r.members = append(r.members[:i], r.members[i+1:]...)
			return m
		}
	}
	return nil
}

// remember records a (sender, id) pair and reports whether it was new.
func (r *room) remember(k dedupKey) bool {
	if _, dup := r.seen[k]; dup {
		return false
	}
	if len(r.seenRing) < roomDedupLen {
		r.seenRing = append(r.seenRing, k)
	} else {
		delete(r.seen, r.seenRing[r.seenNext])
		r.seenRing[r.seenNext] = k
		r.seenNext = (r.seenNext + 1) % roomDedupLen
	}
	r.seen[k] = struct{}{}
	return true
}

func (r *room) addHistory(m chatMsg) {
	r.history = append(r.history, m)
	if len(r.history) > roomHistoryLen {
		r.history = append([]chatMsg(nil), r.history[len(r.history)-roomHistoryLen:]...)
	}
}

func (r *room) memberList() []chatMember {
	l := make([]chatMember, 0, len(r.members))
	for _, m := range r.members {
		l = append(l, chatMember{Peer: m.peer.String(), Nick: m.nick})
	}
	return l
}

// ---------------------------------------------------------------------------------------------
// The server

type roomInput struct {
	peer peer.ID
	data []byte // nil: the peer went Disconnected
}

type outbox struct {
	ch     chan []byte
	cancel context.CancelFunc
}

type roomServer struct {
	ap      *app
	in      chan roomInput
	queries chan func() // run on the worker goroutine (the rooms command)

	// Owned by the worker goroutine.
	rooms    map[string]*room
	memberOf map[peer.ID]map[string]bool
	outboxes map[peer.ID]*outbox

	inputDropped  atomic.Int64 // client messages dropped because the worker's queue was full
	outboxDropped atomic.Int64 // messages not queued because a peer's outbox was full
	sendErrors    atomic.Int64 // Node.Send failures
}

func newRoomServer(ap *app) *roomServer {
	return &roomServer{
		ap:       ap,
		in:       make(chan roomInput, roomInputQueue),
		queries:  make(chan func()),
		rooms:    map[string]*room{},
		memberOf: map[peer.ID]map[string]bool{},
		outboxes: map[peer.ID]*outbox{},
	}
}

// deliver hands a message received on "chat" to the worker; called from the Messages() loop,
// it never blocks (a full queue drops the message and says so).
func (rs *roomServer) deliver(p peer.ID, data []byte) {
	select {
	case rs.in <- roomInput{peer: p, data: append([]byte{}, data...)}:
	default:
		n := rs.inputDropped.Add(1)
		rs.ap.out.Event("room", map[string]any{
			"action": "input_dropped", "peer_id": p.String(), "len": len(data), "count": n,
		})
	}
}

// peerGone reports a Disconnected event; called from the Events() loop. It goes through the same
// queue as the messages so that a peer's last messages are handled before its departure.
func (rs *roomServer) peerGone(p peer.ID) {
	select {
	case rs.in <- roomInput{peer: p}:
	case <-rs.ap.ctx.Done():
	}
}

func (rs *roomServer) run() {
	for {
		select {
		case <-rs.ap.ctx.Done():
			return
		case in := <-rs.in:
			if in.data == nil {
				rs.gone(in.peer)
			} else {
				rs.handle(in.peer, in.data)
			}
		case q := <-rs.queries:
			q()
		}
	}
}

func (rs *roomServer) event(action string, p peer.ID, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["action"] = action
	fields["peer_id"] = p.String()
	rs.ap.out.Event("room", fields)
}

// send queues one wire message for a peer.
func (rs *roomServer) send(p peer.ID, data []byte) {
	if data == nil {
		return
	}
	ob := rs.outboxes[p]
	if ob == nil {
		ctx, cancel := context.WithCancel(rs.ap.ctx)
		ob = &outbox{ch: make(chan []byte, roomOutboxLen), cancel: cancel}
		rs.outboxes[p] = ob
		go rs.sendLoop(ctx, p, ob.ch)
	}
	select {
	case ob.ch <- data:
	default:
		n := rs.outboxDropped.Add(1)
		rs.event("outbox_full", p, map[string]any{"len": len(data), "count": n})
	}
}

func (rs *roomServer) sendLoop(ctx context.Context, p peer.ID, ch <-chan []byte) {
	for {
		select {
		case <-ctx.Done():
			return
		case data := <-ch:
			if err := rs.ap.node.Send(p, chatStream, data); err != nil {
				n := rs.sendErrors.Add(1)
				rs.event("send_error", p, map[string]any{"error": err.Error(), "len": len(data), "count": n})
			}
		}
	}
}

// broadcast sends one wire message to every member of r (except skip, if not empty).
func (rs *roomServer) broadcast(r *room, v any, skip peer.ID) int {
	data := chatJSON(v)
	n := 0
	for _, m := range r.members {
		if m.peer != skip {
			rs.send(m.peer, data)
			n++
		}
	}
	return n
}

func (rs *roomServer) reject(p peer.ID, req chatRequest, code, text string) {
	rs.event("error", p, map[string]any{"code": code, "error": text})
	rs.send(p, chatJSON(chatError{T: "error", Code: code, Text: text, Room: req.room, ID: req.id}))
}

func (rs *roomServer) handle(p peer.ID, data []byte) {
	req, err := parseChat(data)
	if err != nil {
		rs.reject(p, req, errBadRequest, err.Error())
		return
	}
	switch req.t {
	case "join":
		rs.join(p, req)
	case "msg":
		rs.message(p, req)
	case "leave":
		rs.leave(p, req)
	}
}

// evictEmptyRoom forgets the empty room idle the longest, to make space for a new one.
func (rs *roomServer) evictEmptyRoom() bool {
	var oldest *room
	for _, r := range rs.rooms {
		if len(r.members) == 0 && (oldest == nil || r.lastActive.Before(oldest.lastActive)) {
			oldest = r
		}
	}
	if oldest == nil {
		return false
	}
	delete(rs.rooms, oldest.name)
	rs.ap.out.Event("room", map[string]any{"action": "evicted", "room": oldest.name})
	return true
}

func (rs *roomServer) join(p peer.ID, req chatRequest) {
	r := rs.rooms[req.room]
	if r == nil {
		if len(rs.rooms) >= roomMaxRooms && !rs.evictEmptyRoom() {
			rs.reject(p, req, errTooManyRooms, fmt.Sprintf("too many rooms (at most %d, all in use)", roomMaxRooms))
			return
		}
		r = newRoom(req.room)
		rs.rooms[req.room] = r
	}
	r.lastActive = time.Now()
	me := r.member(p)
	rejoin := me != nil
	var renamed bool
	if rejoin {
		renamed = me.nick != req.nick
		me.nick = req.nick
	} else {
		if len(r.members) >= roomMaxMembers {
			rs.reject(p, req, errRoomFull, fmt.Sprintf("room %q is full (%d members)", req.room, roomMaxMembers))
			return
		}
		me = &roomMember{peer: p, nick: req.nick}
		r.members = append(r.members, me)
		if rs.memberOf[p] == nil {
			rs.memberOf[p] = map[string]bool{}
		}
		rs.memberOf[p][req.room] = true
	}
	history := append([]chatMsg{}, r.history...)
	rs.send(p, chatJSON(chatWelcome{T: "welcome", Room: r.name, Members: r.memberList(), History: history}))
	told := 0
	if !rejoin || renamed {
		told = rs.broadcast(r, chatPresence{T: "joined", Room: r.name, Peer: p.String(), Nick: me.nick}, p)
	}
	rs.event("join", p, map[string]any{
		"room": r.name, "nick": me.nick, "rejoin": rejoin, "members": len(r.members), "told": told,
	})
}

func (rs *roomServer) message(p peer.ID, req chatRequest) {
	r := rs.rooms[req.room]
	var me *roomMember
	if r != nil {
		me = r.member(p)
	}
	if me == nil {
		rs.reject(p, req, errNotMember, fmt.Sprintf("not a member of room %q: join it first", req.room))
		return
	}
	if !r.remember(dedupKey{from: p, id: req.id}) {
		// A re-sent message (the page re-sends what it has not seen come back): answer the sender
		// alone with the stored copy, as the Python chat backend does, so its outbox can let go.
		for _, m := range r.history {
			if m.From == p.String() && m.ID == req.id {
				rs.send(p, chatJSON(m))
				break
			}
		}
		rs.event("duplicate", p, map[string]any{"room": r.name, "id": req.id})
		return
	}
	now := time.Now()
	r.lastActive = now
	m := chatMsg{
		T: "msg", Room: r.name, ID: req.id, From: p.String(), Nick: me.nick, Text: req.text, TS: now.UnixMilli(),
	}
	r.addHistory(m)
	n := rs.broadcast(r, m, "")
	rs.event("msg", p, map[string]any{"room": r.name, "id": req.id, "len": len(req.text), "told": n})
}

// removeMember takes p out of r and tells the remaining members (and also p itself when ack).
func (rs *roomServer) removeMember(r *room, p peer.ID, ack bool) {
	me := r.remove(p)
	if me == nil {
		return
	}
	r.lastActive = time.Now()
	if rooms := rs.memberOf[p]; rooms != nil {
		delete(rooms, r.name)
		if len(rooms) == 0 {
			delete(rs.memberOf, p)
		}
	}
	left := chatPresence{T: "left", Room: r.name, Peer: p.String(), Nick: me.nick}
	n := rs.broadcast(r, left, "")
	if ack {
		rs.send(p, chatJSON(left))
	}
	by := "disconnected"
	if ack {
		by = "leave"
	}
	rs.event("left", p, map[string]any{"room": r.name, "nick": me.nick, "by": by, "members": len(r.members), "told": n})
}

// leave is idempotent: leaving a room one is not in changes nothing and is not an error (a page
// may leave after the backend already dropped it).
func (rs *roomServer) leave(p peer.ID, req chatRequest) {
	r := rs.rooms[req.room]
	if r == nil || r.member(p) == nil {
		rs.event("leave_ignored", p, map[string]any{"room": req.room})
		return
	}
	rs.removeMember(r, p, true)
}

// gone handles a Disconnected event: the peer leaves every room, and its outbox is dropped.
func (rs *roomServer) gone(p peer.ID) {
	names := make([]string, 0, len(rs.memberOf[p]))
	for name := range rs.memberOf[p] {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if r := rs.rooms[name]; r != nil {
			rs.removeMember(r, p, false)
		}
	}
	if ob := rs.outboxes[p]; ob != nil {
		ob.cancel()
		delete(rs.outboxes, p)
	}
}

// snapshot describes the rooms (all, or the one named) for the rooms command.
func (rs *roomServer) snapshot(ctx context.Context, only string) (map[string]any, error) {
	res := make(chan map[string]any, 1)
	q := func() {
		names := []string{}
		for name := range rs.rooms {
			if only == "" || name == only {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		rooms := []map[string]any{}
		for _, name := range names {
			r := rs.rooms[name]
			rooms = append(rooms, map[string]any{
				"room": name, "members": r.memberList(), "history": len(r.history),
				"dedup": len(r.seenRing), "last_active": timeOrNil(r.lastActive),
			})
		}
		res <- map[string]any{
			"rooms":          rooms,
			"peers":          len(rs.memberOf),
			"outboxes":       len(rs.outboxes),
			"input_dropped":  rs.inputDropped.Load(),
			"outbox_dropped": rs.outboxDropped.Load(),
			"send_errors":    rs.sendErrors.Load(),
		}
	}
	select {
	case rs.queries <- q:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-res:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (ap *app) cmdRooms(ctx context.Context, a *jsonl.Args) (map[string]any, error) {
	only := a.OptStr("room", "")
	if a.Err() != nil {
		return nil, a.Err()
	}
	if ap.room == nil {
		return nil, errors.New("not in room mode (--on-message room)")
	}
	return ap.room.snapshot(ctx, only)
}
