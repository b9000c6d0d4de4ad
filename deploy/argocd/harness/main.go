// Command argocd-health runs an Argo CD resource health check (a Lua script)
// over Kubernetes objects, the way Argo CD's application controller does, so
// that Szál's health checks are tested in the interpreter Argo CD embeds.
//
// Usage:
//
//	argocd-health [-open-libs] SCRIPT.lua < objects
//
// stdin holds one or more JSON objects (concatenated or one per line, as
// `kubectl get -o json` prints them); for each, one line of JSON goes to
// stdout:
//
//	{"status":"Healthy","message":"..."}
//	{"status":"Unknown","message":"<error>","error":true}   the script failed
//	{"assessed":false}                                       the script returned nil
//
// What it mirrors of Argo CD (util/lua in argo-cd v3.6.1, which pins
// github.com/yuin/gopher-lua v1.1.2 and layeh.com/gopher-json, pinned the
// same in go.mod), written from reading it, not copied:
//
//   - A fresh LState per object. Unless -open-libs is given (argocd-cm's
//     resource.customizations.useOpenLibs.<group>_<kind>: true), the
//     standard libraries are skipped and only package, base, table and a
//     safe os (time and date only, also preloaded for require "os") are
//     opened: no string, math, io or debug library in custom checks.
//   - The object is decoded as Kubernetes' unstructured JSON decoder does
//     (integers as int64, other numbers as float64) and turned into Lua
//     values the way Argo CD's decodeValue does: numbers become numbers,
//     objects and arrays become tables (arrays 1-based), JSON null becomes
//     nil (so the key is absent). It is set as the global `obj`.
//   - The script is compiled and called with a 1 s deadline; its last
//     return value is the result. A table is encoded with gopher-json and
//     read as {status, message, deletionMessage}; an empty table is "no
//     opinion" (empty status); a status outside Healthy, Progressing,
//     Suspended, Degraded, Missing, Unknown becomes Unknown with "Lua
//     returned an invalid health status"; nil means not assessed; any other
//     type, or a runtime error, is Unknown with the error as the message.
//   - gitops-engine's handling of terminating objects: with
//     metadata.deletionTimestamp set and no argocd.argoproj.io/hook-finalizer,
//     the result is Progressing "Pending deletion[; blocked by finalizers:
//     ...]" unless the script set deletionMessage, which then replaces the
//     message.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

const (
	hookFinalizer       = "argocd.argoproj.io/hook-finalizer"
	invalidHealthStatus = "Lua returned an invalid health status"
	scriptDeadline      = time.Second
)

var validStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

// health is what Argo CD reads from the table a script returns.
type health struct {
	Status          string `json:"status,omitempty"`
	Message         string `json:"message,omitempty"`
	DeletionMessage string `json:"deletionMessage,omitempty"`
}

// result is one output line.
type result struct {
	Status   *string `json:"status,omitempty"`
	Message  *string `json:"message,omitempty"`
	Error    bool    `json:"error,omitempty"`
	Assessed *bool   `json:"assessed,omitempty"`
}

func main() {
	openLibs := flag.Bool("open-libs", false, "open Lua's standard libraries (argocd-cm useOpenLibs)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-health [-open-libs] SCRIPT.lua < objects.json")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	source, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "argocd-health: %v\n", err)
		os.Exit(2)
	}
	script := string(source)

	decoder := json.NewDecoder(bufio.NewReader(os.Stdin))
	decoder.UseNumber()
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for n := 1; ; n++ {
		var raw any
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			fmt.Fprintf(os.Stderr, "argocd-health: object %d on stdin: %v\n", n, err)
			os.Exit(2)
		}
		object, ok := unstructured(raw).(map[string]any)
		if !ok {
			fmt.Fprintf(os.Stderr, "argocd-health: object %d on stdin is not a JSON object\n", n)
			os.Exit(2)
		}
		if err := out.Encode(assess(object, script, *openLibs)); err != nil {
			fmt.Fprintf(os.Stderr, "argocd-health: %v\n", err)
			os.Exit(1)
		}
	}
}

// unstructured converts json.Number the way Kubernetes' unstructured decoder
// does: an integer that fits becomes int64, anything else float64.
func unstructured(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = unstructured(v[i])
		}
		return v
	case map[string]any:
		for k := range v {
			v[k] = unstructured(v[k])
		}
		return v
	}
	return value
}

func assess(object map[string]any, script string, openLibs bool) result {
	h, err := runHealth(object, script, openLibs)
	if err != nil {
		return unknown(err.Error(), true)
	}
	if h == nil {
		if d := pendingDeletion(object, nil); d != nil {
			return done(*d)
		}
		f := false
		return result{Assessed: &f}
	}
	if d := pendingDeletion(object, h); d != nil {
		return done(*d)
	}
	return done(*h)
}

func done(h health) result {
	return result{Status: &h.Status, Message: &h.Message}
}

func unknown(message string, failed bool) result {
	s := "Unknown"
	return result{Status: &s, Message: &message, Error: failed}
}

// runHealth is Argo CD's ExecuteHealthLua: nil, nil when the script returns nil.
func runHealth(object map[string]any, script string, openLibs bool) (*health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), scriptDeadline)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))

	fn, err := l.LoadString(script)
	if err != nil {
		return nil, err
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = "" // Argo CD drops the Lua stack trace from what users see
			return nil, apiErr
		}
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return nil, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	h := &health{}
	if err := json.Unmarshal(encoded, h); err != nil {
		// gopher-json encodes an empty table as [], which Argo CD reads as "no opinion".
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" {
			return &health{}, nil
		}
		return nil, err
	}
	if !validStatuses[h.Status] {
		return &health{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return h, nil
}

// pendingDeletion is gitops-engine's treatment of terminating objects.
func pendingDeletion(object map[string]any, h *health) *health {
	meta, _ := object["metadata"].(map[string]any)
	if meta == nil || meta["deletionTimestamp"] == nil {
		return nil
	}
	var finalizers []string
	if list, ok := meta["finalizers"].([]any); ok {
		for _, f := range list {
			if s, ok := f.(string); ok {
				finalizers = append(finalizers, s)
			}
		}
	}
	for _, f := range finalizers {
		if f == hookFinalizer {
			return nil
		}
	}
	if h != nil && h.DeletionMessage != "" {
		return &health{Status: h.Status, Message: h.DeletionMessage}
	}
	message := "Pending deletion"
	if len(finalizers) > 0 {
		message += "; blocked by finalizers: " + strings.Join(finalizers, ", ")
	}
	return &health{Status: "Progressing", Message: message}
}

// toLua turns a decoded JSON value into a Lua value as Argo CD does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// safeOsNames are the only os functions Argo CD exposes to health scripts.
var safeOsNames = []string{"time", "date"}

// safeOsFuncs takes gopher-lua's own os.time and os.date (Argo CD's safe os
// library carries copies of these two) from a scratch state.
func safeOsFuncs() map[string]lua.LGFunction {
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	scratch.Push(scratch.NewFunction(lua.OpenOs))
	scratch.Call(0, 1)
	full := scratch.Get(-1).(*lua.LTable)
	funcs := map[string]lua.LGFunction{}
	for _, name := range safeOsNames {
		funcs[name] = full.RawGetString(name).(*lua.LFunction).GFunction
	}
	return funcs
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOsFuncs()))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs()))
	return 1
}
