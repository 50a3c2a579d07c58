// Package loopback measures the baseline that transfers through the
// console are compared with: a raw copy of the same bytes over a loopback
// TCP connection, optionally with the receiver checking their SHA-256 as
// any checked transfer must. It serves the benchmarks and harnesses.
package loopback

import (
	"crypto/sha256"
	"io"
	"net"
	"slices"
	"time"
)

// Rate copies data over a loopback TCP connection runs times and returns
// the median rate in MiB/s. With check, the receiver also computes the
// data's SHA-256 on a second goroutine as the bytes arrive: the fastest
// a checked transfer can go.
func Rate(data []byte, check bool, runs int) (float64, error) {
	var rates []float64
	for range max(runs, 1) {
		d, err := copyOnce(data, check)
		if err != nil {
			return 0, err
		}
		rates = append(rates, float64(len(data))/d.Seconds()/(1<<20))
	}
	slices.Sort(rates)
	return rates[len(rates)/2], nil
}

func copyOnce(data []byte, check bool) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	done := make(chan time.Duration, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		defer c.Close()
		start := time.Now()
		if check {
			receiveChecked(c)
		} else {
			io.Copy(io.Discard, c)
		}
		done <- time.Since(start)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	_, err = c.Write(data)
	c.Close()
	d := <-done
	if err == nil && d == 0 {
		err = io.ErrUnexpectedEOF
	}
	return d, err
}

// receiveChecked reads r to its end into eight 256 KiB buffers that a
// second goroutine hashes, as package client does.
func receiveChecked(r io.Reader) {
	full, free := make(chan []byte, 8), make(chan []byte, 8)
	for range 8 {
		free <- make([]byte, 256<<10)
	}
	hashed := make(chan struct{})
	go func() {
		h := sha256.New()
		for b := range full {
			h.Write(b)
			free <- b[:cap(b)]
		}
		close(hashed)
	}()
	for {
		b := <-free
		n, err := io.ReadFull(r, b)
		if n > 0 {
			full <- b[:n]
		}
		if err != nil {
			break
		}
	}
	close(full)
	<-hashed
}
