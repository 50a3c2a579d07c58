// Package wire defines the ops-repl console protocol: the WebSocket
// subprotocol name, the requests a client sends, the events the server
// streams back and the stable error codes. Server and client share it; it
// depends on the standard library only. PROTOCOL.md at the repository root
// is the prose version of this package.
//
// Every frame is a JSON text message, except the chunks of a file
// transfer, which are binary messages sent between a "file" event and its
// "file_end" event.
//
// Usage (client side):
//
//	b, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: 1, Line: "memstats"})
//	conn.WriteMessage(websocket.TextMessage, b)
//	_, msg, _ := conn.ReadMessage()
//	ev, err := wire.DecodeEvent(msg)
package wire
