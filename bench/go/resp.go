package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// respConn is a minimal Redis (RESP2) connection: pipelined commands and generic replies.
// Only what the latency test needs; one goroutine per connection.
type respConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dialRESP(addr string) (*respConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{conn: conn, r: bufio.NewReaderSize(conn, 1<<16), w: bufio.NewWriterSize(conn, 1<<16)}, nil
}

func (c *respConn) write(args ...[]byte) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n", len(a))
		c.w.Write(a)
		c.w.WriteString("\r\n")
	}
}

// reply reads one reply: string, int64, []interface{}, nil, or an error value for "-ERR".
func (c *respConn) reply() (interface{}, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 {
		return nil, errors.New("resp: short line")
	}
	kind, rest := line[0], string(line[1:len(line)-2])
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return errors.New(rest), nil
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		items := make([]interface{}, n)
		for i := range items {
			if items[i], err = c.reply(); err != nil {
				return nil, err
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("resp: unexpected %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	total := 0
	for total < len(buf) {
		n, err := r.Read(buf[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// redisTarget is Redis Streams in the latency subcommand: each producer worker pipelines its
// batch as XADDs on its own connection; one consumer follows the stream with XREAD BLOCK.
type redisTarget struct {
	addr    string
	key     []byte
	conns   []*respConn
	stop    chan struct{}
	reading sync.WaitGroup
	reader  *respConn
}

func newRedisTarget(addr, key string, workers int) (*redisTarget, error) {
	t := &redisTarget{addr: addr, key: []byte(key), stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		c, err := dialRESP(addr)
		if err != nil {
			t.close()
			return nil, err
		}
		t.conns = append(t.conns, c)
	}
	return t, nil
}

var (
	cmdXADD  = []byte("XADD")
	cmdStar  = []byte("*")
	fieldV   = []byte("v")
	cmdXREAD = []byte("XREAD")
)

func (t *redisTarget) produce(worker int, values [][]byte) error {
	c := t.conns[worker]
	for _, v := range values {
		c.write(cmdXADD, t.key, cmdStar, fieldV, v)
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	var firstErr error
	for range values {
		r, err := c.reply()
		if err != nil {
			return err
		}
		if e, ok := r.(error); ok && firstErr == nil {
			firstErr = e
		}
	}
	return firstErr
}

func (t *redisTarget) startConsumer(got func(int64)) error {
	c, err := dialRESP(t.addr)
	if err != nil {
		return err
	}
	t.reader = c
	c.write([]byte("XREVRANGE"), t.key, []byte("+"), []byte("-"), []byte("COUNT"), []byte("1"))
	if err := c.w.Flush(); err != nil {
		return err
	}
	r, err := c.reply()
	if err != nil {
		return err
	}
	last := "0-0"
	if items, ok := r.([]interface{}); ok && len(items) == 1 {
		last = items[0].([]interface{})[0].(string)
	}
	t.reading.Add(1)
	go t.follow(c, last, got)
	return nil
}

func (t *redisTarget) follow(c *respConn, last string, got func(int64)) {
	defer t.reading.Done()
	for {
		select {
		case <-t.stop:
			return
		default:
		}
		c.write(cmdXREAD, []byte("COUNT"), []byte("1000"), []byte("BLOCK"), []byte("500"),
			[]byte("STREAMS"), t.key, []byte(last))
		if c.w.Flush() != nil {
			return
		}
		r, err := c.reply()
		if err != nil {
			return
		}
		streams, ok := r.([]interface{})
		if !ok || len(streams) == 0 {
			continue // timed out: nil reply
		}
		entries := streams[0].([]interface{})[1].([]interface{})
		for _, e := range entries {
			entry := e.([]interface{})
			last = entry[0].(string)
			fields := entry[1].([]interface{})
			got(stampOf([]byte(fields[1].(string))))
		}
	}
}

func (t *redisTarget) close() {
	close(t.stop)
	t.reading.Wait()
	if t.reader != nil {
		t.reader.conn.Close()
	}
	for _, c := range t.conns {
		c.conn.Close()
	}
}
