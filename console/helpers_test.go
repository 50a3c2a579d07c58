package console

import (
	"context"
	"net"
)

type netAddr = net.Addr

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
