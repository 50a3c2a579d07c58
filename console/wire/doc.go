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
// Go programs talk to a console with package client, which speaks this
// protocol; the types here are what its requests and events are made of.
// A client of its own marshals a Request into a text frame and decodes
// each text frame it receives with DecodeEvent.
package wire
