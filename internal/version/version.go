// Package version says which chokepoint this is.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time (-ldflags "-X .../internal/version.Version=v1.2.3");
// otherwise it is taken from the module's build information.
var Version = ""

// String returns the chokepoint version.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Go returns the Go version chokepoint was built with.
func Go() string { return runtime.Version() }
