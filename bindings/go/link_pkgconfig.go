//go:build !wtd_no_pkgconfig

package wtd

// By default the library is found with pkg-config (wtd.pc, installed by
// `cmake --install <build> --prefix <dir>`; point PKG_CONFIG_PATH at <dir>/lib/pkgconfig).
// Build with -tags wtd_no_pkgconfig to pass the flags yourself (CGO_CFLAGS / CGO_LDFLAGS).

// #cgo pkg-config: wtd
import "C"
