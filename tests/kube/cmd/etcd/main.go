// etcd for the test cluster: the server that Kubernetes itself depends on,
// at the version its go.mod pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
