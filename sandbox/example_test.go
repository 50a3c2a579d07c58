package sandbox_test

import (
	"context"
	"fmt"
	"os"

	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
)

func Example() {
	// (The test binary calls sandbox.Main first in TestMain.)
	exp := new(interp.Exports).Func("shop/cache", "Len", func() int { return 21 })
	pool, err := sandbox.New(sandbox.Options{Exports: exp})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := pool.Start(context.Background(), sandbox.Spec{Packages: []string{"shop/cache"}})
	if err != nil {
		panic(err)
	}
	defer in.Close()
	v, err := in.Eval(context.Background(), `cache.Len() * 2`, os.Stdout)
	fmt.Println(v, err)
	_, err = in.Eval(context.Background(), `import "os"`, os.Stdout)
	fmt.Println(err)
	// Output:
	// 42 <nil>
	// import "os": not available in this session (type vars to list what is)
}
