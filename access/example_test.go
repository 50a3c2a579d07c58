package access_test

import (
	"fmt"

	"github.com/opsrepl/opsrepl/access"
)

func Example() {
	obj := access.Command("heapdump")
	fmt.Println(obj, access.ActionOf(obj))
	fmt.Println(access.Check("pkg:shop/cache", access.Run))
	// Output:
	// cmd:heapdump run
	// pkg:shop/cache is asked with import, never run
}
