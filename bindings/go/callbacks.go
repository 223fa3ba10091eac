package wtd

// Callbacks from the library into Go. A file with //export may only declare in its preamble,
// so this one holds no C calls (those stay in cgo.go); it only receives them.

/*
#include <wtd.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// Request is a WebTransport session request shown to ServerOptions.OnRequest.
type Request struct {
	Path      string // :path with query
	Authority string // :authority (host[:port])
	Origin    string // origin header ("" when absent; browsers always send it)
	Draft     Draft  // the draft the client speaks
}

// wtdgoOnRequest is the C trampoline for ServerOptions.OnRequest: user_data is a cgo.Handle of
// the Go function. Runs on a wtd runtime thread. A panic in the function refuses with 500.
//
//export wtdgoOnRequest
func wtdgoOnRequest(ud unsafe.Pointer, req *C.struct_wtd_session_request) (status C.uint16_t) {
	status = 500
	defer func() { recover() }()
	fn, ok := cgo.Handle(uintptr(ud)).Value().(func(*Request) int)
	if !ok || req == nil {
		return
	}
	r := &Request{Path: C.GoString(req.path), Authority: C.GoString(req.authority), Draft: Draft(req.draft)}
	if req.origin != nil {
		r.Origin = C.GoString(req.origin)
	}
	s := fn(r)
	if s < 100 || s > 599 {
		s = 500
	}
	return C.uint16_t(s)
}
