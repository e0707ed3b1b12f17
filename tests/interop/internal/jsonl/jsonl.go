// Package jsonl is the JSON-lines plumbing shared by the interop test programs (cmd/p2p-peer
// and cmd/glueberry-peer): the command loop that reads requests from stdin and answers them,
// the reader of a request's arguments, and the writer of answers and events on stdout.
//
// Requests arrive one JSON object per line: {"id": N, "cmd": "...", ...arguments}. Each gets
// exactly one answer, {"id": N, "ok": true, ...} or {"id": N, "ok": false, "error": "..."}.
// Commands run concurrently, so answers may come out of order. Every command takes an
// optional "timeout_ms" (default DefaultTimeout); the command "quit" answers and quits.
// Unprompted events are printed as {"event": "...", ...}.
package jsonl

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultTimeout bounds a command that gives no "timeout_ms".
const DefaultTimeout = 120 * time.Second

// ---------------------------------------------------------------------------------------------
// Output

// Output writes JSON lines (answers and events), one whole line at a time, from any goroutine.
type Output struct {
	// TimeMs makes every event carry "time_ms" (Unix time in milliseconds, microsecond
	// resolution). Set it before the Output is used.
	TimeMs bool

	mu sync.Mutex
	w  *bufio.Writer
}

// NewOutput returns an Output writing to w.
func NewOutput(w io.Writer) *Output {
	return &Output{w: bufio.NewWriter(w)}
}

// Emit writes v as one JSON line and flushes it.
func (o *Output) Emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Printf("cannot encode output: %v", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(b)
	_ = o.w.WriteByte('\n')
	_ = o.w.Flush()
}

// Event writes {"event": name, ...fields} (with "time_ms" when TimeMs is set).
func (o *Output) Event(name string, fields map[string]any) {
	m := map[string]any{"event": name}
	if o.TimeMs {
		m["time_ms"] = NowMs()
	}
	for k, v := range fields {
		m[k] = v
	}
	o.Emit(m)
}

// NowMs is the Unix time in milliseconds, with microsecond resolution.
func NowMs() float64 { return float64(time.Now().UnixMicro()) / 1000 }

// Ms is a duration in milliseconds, with microsecond resolution.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// DirName names a connection or stream direction: "inbound", "outbound" or "unknown".
func DirName(d network.Direction) string {
	switch d {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	default:
		return "unknown"
	}
}

// ---------------------------------------------------------------------------------------------
// Arguments

// Args are the arguments of one request. The readers record the first problem (a missing or
// malformed argument) instead of returning it: read them all, then check Err once.
type Args struct {
	m   map[string]json.RawMessage
	err error
}

// Err is the first problem met while reading the arguments, or nil.
func (a *Args) Err() error { return a.err }

// Fail records a problem, unless one is already recorded.
func (a *Args) Fail(format string, v ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, v...)
	}
}

// Has reports whether argument k is given and not null.
func (a *Args) Has(k string) bool {
	v, ok := a.m[k]
	return ok && string(v) != "null"
}

// Decode unmarshals argument k into dst; false when it is absent, null or malformed.
func (a *Args) Decode(k string, dst any) bool {
	if !a.Has(k) {
		return false
	}
	if err := json.Unmarshal(a.m[k], dst); err != nil {
		a.Fail("argument %q: %v", k, err)
		return false
	}
	return true
}

// required decodes the required argument k.
func required[T any](a *Args, k string) T {
	var v T
	if !a.Decode(k, &v) {
		a.Fail("missing argument %q", k)
	}
	return v
}

// optional decodes the argument k, or returns def when it is absent or null.
func optional[T any](a *Args, k string, def T) T {
	v := def
	a.Decode(k, &v)
	return v
}

// Str reads a required string.
func (a *Args) Str(k string) string { return required[string](a, k) }

// OptStr reads an optional string.
func (a *Args) OptStr(k, def string) string { return optional(a, k, def) }

// Int reads a required integer.
func (a *Args) Int(k string) int64 { return required[int64](a, k) }

// OptInt reads an optional integer.
func (a *Args) OptInt(k string, def int64) int64 { return optional(a, k, def) }

// OptBool reads an optional boolean.
func (a *Args) OptBool(k string, def bool) bool { return optional(a, k, def) }

// StrList reads an optional list of strings (nil when absent).
func (a *Args) StrList(k string) []string { return optional[[]string](a, k, nil) }

// Peer reads a required peer ID.
func (a *Args) Peer(k string) peer.ID {
	s := a.Str(k)
	if a.err != nil {
		return ""
	}
	p, err := peer.Decode(s)
	if err != nil {
		a.Fail("argument %q: bad peer id: %v", k, err)
	}
	return p
}

// HexBytes reads required bytes written in hex.
func (a *Args) HexBytes(k string) []byte {
	s := a.Str(k)
	if a.err != nil {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		a.Fail("argument %q: bad hex: %v", k, err)
	}
	return b
}

// ---------------------------------------------------------------------------------------------
// The command loop

// Handler runs one command. ctx ends with the command's timeout or when the program quits.
// A nil result answers {"ok": true} alone; an error (or a problem left in a.Err) answers
// {"ok": false, "error": ...}.
type Handler func(ctx context.Context, a *Args) (map[string]any, error)

// Serve reads requests from in, one per line, and runs each command of cmds on its own
// goroutine, under a context derived from ctx. The command "quit" (answered first) and the end
// of in (or a read error, logged) quit: Serve calls stop once, then exits the process with
// status 0. It does not return.
func Serve(ctx context.Context, in io.Reader, out *Output, cmds map[string]Handler, stop func()) {
	var quitOnce sync.Once
	quit := func() {
		quitOnce.Do(func() {
			stop()
			os.Exit(0)
		})
	}
	r := bufio.NewReaderSize(in, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			dispatch(ctx, out, line, cmds, quit)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Printf("stdin: %v", err)
			}
			quit()
		}
	}
}

func dispatch(ctx context.Context, out *Output, line []byte, cmds map[string]Handler, quit func()) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		out.Emit(map[string]any{"id": nil, "ok": false, "error": "bad JSON: " + err.Error()})
		return
	}
	id := m["id"]
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	a := &Args{m: m}
	cmd := a.Str("cmd")
	timeout := time.Duration(a.OptInt("timeout_ms", int64(DefaultTimeout/time.Millisecond))) * time.Millisecond
	if a.err != nil {
		out.Emit(map[string]any{"id": id, "ok": false, "error": a.err.Error()})
		return
	}
	if cmd == "quit" {
		out.Emit(map[string]any{"id": id, "ok": true})
		go quit()
		return
	}
	fn, ok := cmds[cmd]
	if !ok {
		out.Emit(map[string]any{"id": id, "ok": false, "error": fmt.Sprintf("unknown command %q", cmd)})
		return
	}
	go func() {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		res, err := fn(cctx, a)
		if err == nil && a.err != nil {
			err = a.err
		}
		if err != nil {
			out.Emit(map[string]any{"id": id, "ok": false, "error": err.Error()})
			return
		}
		if res == nil {
			res = map[string]any{}
		}
		res["id"] = id
		res["ok"] = true
		out.Emit(res)
	}()
}
