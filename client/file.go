package client

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opsrepl/opsrepl/console/wire"
)

// A Sink receives the bytes of one transferred file.
type Sink interface {
	io.Writer
	// Finish ends the transfer: with nil when every byte arrived and the
	// size and SHA-256 matched the file event (keep the file), or with the
	// reason it failed (discard what was written). Its error is the
	// transfer's.
	Finish(err error) error
}

// FileFunc returns the Sink for a file event (its Name, Size and SHA256).
// It is called on the connection's reading goroutine. The Sink's Write
// is called on a goroutine of the transfer's, in order; its Finish on the
// reading goroutine once the last Write has returned: never two at once.
// None of them may call the Conn. An error discards the file; the
// request goes on, and reports the error with the file_end event.
type FileFunc func(wire.Event) (Sink, error)

// WriterSink turns a Writer into a Sink whose Finish does nothing but
// report the transfer's error: for files kept in memory (a bytes.Buffer).
func WriterSink(w io.Writer) Sink { return writerSink{w} }

type writerSink struct{ io.Writer }

func (writerSink) Finish(err error) error { return err }

// FileError is a transferred file that was not kept.
type FileError struct {
	Name string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("file %q not kept: %v", e.Name, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// transfer is the connection's open file transfer. Three goroutines
// overlap: the reading goroutine reads binary frames straight into the
// transfer's buffers, a hashing goroutine hashes each full buffer, and a
// writing goroutine hands it to the sink and frees it. At most xferBufs
// buffers of xferBufBytes exist per transfer, whatever the file's size.
type transfer struct {
	id   uint64
	name string
	size int64
	sha  string
	n    int64  // bytes received (reading goroutine)
	buf  []byte // being filled (reading goroutine)
	made int    // buffers allocated (reading goroutine)
	done bool   // the pipeline was told to stop (reading goroutine)

	hashq   chan []byte   // full buffers, to the hashing goroutine
	writeq  chan []byte   // hashed buffers, to the writing goroutine
	free    chan []byte   // emptied buffers, back to the reader
	stopped chan struct{} // closed when the writing goroutine has returned

	// Theirs; read once stopped is closed.
	h    hash.Hash
	sink Sink  // nil: discarded
	err  error // the first failure; later bytes are dropped
}

const (
	xferBufBytes = 256 << 10
	xferBufs     = 8
)

// startTransfer opens the transfer a file event announces, for r (nil for
// a request given up on). A malformed event is a protocol error.
func startTransfer(ev wire.Event, r *Request) (*transfer, error) {
	if ev.Size < 0 || len(ev.SHA256) != 64 {
		return nil, fmt.Errorf("%w: a file event without size and sha256", ErrProtocol)
	}
	if _, err := hex.DecodeString(ev.SHA256); err != nil {
		return nil, fmt.Errorf("%w: a file event with a bad sha256", ErrProtocol)
	}
	t := &transfer{id: ev.ID, name: ev.Name, size: ev.Size, sha: strings.ToLower(ev.SHA256), h: sha256.New(),
		hashq: make(chan []byte, xferBufs), writeq: make(chan []byte, xferBufs),
		free: make(chan []byte, xferBufs), stopped: make(chan struct{})}
	if r != nil && r.file != nil {
		t.sink, t.err = r.file(ev)
	}
	go t.hash()
	go t.write()
	return t, nil
}

// hash hashes the full buffers, in order.
func (t *transfer) hash() {
	defer close(t.writeq)
	for b := range t.hashq {
		t.h.Write(b)
		t.writeq <- b
	}
}

// write writes the hashed buffers to the sink, in order, and frees them.
func (t *transfer) write() {
	defer close(t.stopped)
	for b := range t.writeq {
		if t.err == nil && t.sink != nil {
			if _, err := t.sink.Write(b); err != nil {
				t.err = err
			}
		}
		t.free <- b[:0]
	}
}

// readFrom takes one binary frame. More bytes than announced is a
// protocol error; a sink's failure only fails the file.
func (t *transfer) readFrom(r io.Reader) error {
	for {
		if t.buf == nil {
			t.buf = t.buffer()
		}
		n, err := r.Read(t.buf[len(t.buf):cap(t.buf)])
		t.buf = t.buf[:len(t.buf)+n]
		t.n += int64(n)
		if t.n > t.size {
			err := fmt.Errorf("%w: %s is larger than the announced %d bytes", ErrProtocol, t.name, t.size)
			t.buf = nil // no byte past the announced size reaches the sink
			t.abort(err)
			return err
		}
		if len(t.buf) == cap(t.buf) {
			t.hashq <- t.buf
			t.buf = nil
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// buffer returns an empty buffer: a new one while fewer than xferBufs
// exist, else the next one the writing goroutine is done with.
func (t *transfer) buffer() []byte {
	select {
	case b := <-t.free:
		return b
	default:
	}
	if t.made < xferBufs {
		t.made++
		return make([]byte, 0, xferBufBytes)
	}
	return <-t.free
}

// stop hands over what is buffered and waits for the pipeline to drain.
func (t *transfer) stop() {
	if t.done {
		return
	}
	t.done = true
	if len(t.buf) > 0 {
		t.hashq <- t.buf
	}
	t.buf = nil
	close(t.hashq)
	<-t.stopped
}

// finish checks the file at its file_end.
func (t *transfer) finish() error {
	t.stop()
	err := t.err
	switch {
	case err != nil:
	case t.n != t.size:
		err = fmt.Errorf("it stopped at %d of %d bytes", t.n, t.size)
	case hex.EncodeToString(t.h.Sum(nil)) != t.sha:
		err = fmt.Errorf("it is corrupt: sha256 %s, announced %s", hex.EncodeToString(t.h.Sum(nil)), t.sha)
	}
	if t.sink != nil {
		err = t.sink.Finish(err)
		t.sink = nil
	}
	if err != nil {
		return &FileError{Name: t.name, Err: err}
	}
	return nil
}

// abort drops a transfer that will not complete.
func (t *transfer) abort(why error) {
	t.stop()
	if t.sink != nil {
		t.sink.Finish(why)
		t.sink = nil
	}
}

// SafeName accepts a server-suggested file name only if it is a plain name:
// 1 to 128 letters, digits, '.', '-' and '_', not starting with a dot.
func SafeName(name string) (string, error) {
	if name == "" || len(name) > 128 || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("refusing the file name %q", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("refusing the file name %q", name)
		}
	}
	return name, nil
}

// File is a transferred file being saved in a folder by Save.
type File struct {
	dir, name string
	size      int64
	f         *os.File
	path      string
}

// Save returns a FileFunc that saves files in dir (created 0700 if
// missing): each is written to a temporary file (mode 0600), and only once
// its size and SHA-256 check is it given its name, with -1, -2, … added
// rather than replacing an existing file. A file larger than the space
// left in dir (less 64 MiB, kept for everything else) is refused before a
// byte is written. onSaved, if not nil, is called with each File once it
// is in place (on the reading goroutine).
func Save(dir string, onSaved func(*File)) FileFunc {
	return func(ev wire.Event) (Sink, error) {
		f, err := newFile(dir, ev.Name)
		if err != nil {
			return nil, err
		}
		if free := freeBytes(dir); free >= 0 && ev.Size > free-spareBytes {
			f.Finish(errors.New("no room"))
			return nil, fmt.Errorf("it needs %d bytes and %s has %d free (64 MiB are kept spare): free some space, or choose another folder", ev.Size, dir, max(free, 0))
		}
		f.size = ev.Size
		f.onSaved = onSaved
		return f, nil
	}
}

func newFile(dir, name string) (*fileSink, error) {
	name, err := SafeName(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".ops-repl-*.part") // mode 0600
	if err != nil {
		return nil, err
	}
	return &fileSink{File: File{dir: dir, name: name, f: tmp}}, nil
}

// copyTo copies the checked temporary file to path, which must not exist.
func (f *fileSink) copyTo(path string) error {
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.f.Seek(0, io.SeekStart)
	if err == nil {
		_, err = io.Copy(dst, f.f)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// spareBytes is the space Save leaves free in the download folder.
const spareBytes = 64 << 20

type fileSink struct {
	File
	onSaved func(*File)
}

// Name is the server's name for the file.
func (f *File) Name() string { return f.name }

// Size is the file's size in bytes.
func (f *File) Size() int64 { return f.size }

// Path is where the file was saved (absolute), once it is.
func (f *File) Path() string { return f.path }

func (f *fileSink) Write(b []byte) (int, error) { return f.f.Write(b) }

func (f *fileSink) Finish(err error) error {
	defer func() {
		f.f.Close()
		os.Remove(f.f.Name())
	}()
	if err != nil {
		return err
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	ext := filepath.Ext(f.name)
	if strings.HasSuffix(f.name, ".pb.gz") {
		ext = ".pb.gz"
	}
	base := strings.TrimSuffix(f.name, ext)
	for i := 0; i < 1000; i++ {
		name := f.name
		if i > 0 {
			name = fmt.Sprintf("%s-%d%s", base, i, ext)
		}
		path := filepath.Join(f.dir, name)
		// Link, not rename: it fails instead of replacing an existing file.
		// Where the file system has no hard links, copy to a file created
		// exclusively, which fails the same way.
		err := os.Link(f.f.Name(), path)
		if err != nil && !errors.Is(err, os.ErrExist) {
			err = f.copyTo(path)
		}
		if err == nil {
			f.path, _ = filepath.Abs(path)
			if f.onSaved != nil {
				f.onSaved(&f.File)
			}
			return nil
		}
		if !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return fmt.Errorf("too many files named like %s in %s", f.name, f.dir)
}
