//go:build wtd_no_pkgconfig

package wtd

// With -tags wtd_no_pkgconfig only -lwtd is added; give the header and library directories in
// CGO_CFLAGS="-I<repo>/include" and CGO_LDFLAGS="-L<build>/lib -Wl,-rpath,<build>/lib".

// #cgo LDFLAGS: -lwtd
import "C"
