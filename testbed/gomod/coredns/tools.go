//go:build tools

// Package tools keeps the main packages built by testbed/build in the module graph.
package tools

import (
	_ "github.com/coredns/coredns"
)
