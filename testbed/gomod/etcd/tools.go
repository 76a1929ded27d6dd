//go:build tools

// Package tools keeps the main packages built by testbed/build in the module graph.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "go.etcd.io/etcd/etcdctl/v3"
)
