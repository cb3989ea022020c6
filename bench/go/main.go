// Command kbload is the Go load client of kbroker's benchmarks (bench/, docs/benchmarks.md).
//
// It is built from Debian's golang-go with Debian's nats.go (GOPATH=/usr/share/gocode,
// GO111MODULE=off: no network) by bench/gobench.py. Every subcommand is bounded in records and
// in time, talks to 127.0.0.1 only (the addresses it is given) and prints one JSON document.
//
//	kbload nats-pub    JetStream publish throughput (sync, or async with a window)
//	kbload nats-fetch  JetStream pull-consumer fetch throughput
//	kbload http-fetch  kbroker stateless fetch throughput (advances by X-KBroker-Next-Offset)
//	kbload latency     open-loop produce at a fixed rate with an end-to-end consumer
//	                   (-system kbroker | redis | nats)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: kbload nats-pub|nats-fetch|http-fetch|latency [flags]"))
	}
	var out interface{}
	var err error
	switch os.Args[1] {
	case "nats-pub":
		out, err = natsPub(os.Args[2:])
	case "nats-fetch":
		out, err = natsFetch(os.Args[2:])
	case "http-fetch":
		out, err = httpFetch(os.Args[2:])
	case "latency":
		out, err = latency(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kbload:", err)
	os.Exit(1)
}

// Throughput is the result of a throughput subcommand.
type Throughput struct {
	Records  int64   `json:"records"`
	Bytes    int64   `json:"bytes"`
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	Errors   int64   `json:"errors"`
	TimedOut bool    `json:"timed_out"`
}

// Percentiles summarises a latency sample in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// summarise sorts the sample (nanoseconds) and picks nearest-rank percentiles.
func summarise(sample []int64) Percentiles {
	if len(sample) == 0 {
		return Percentiles{}
	}
	sort.Slice(sample, func(i, j int) bool { return sample[i] < sample[j] })
	rank := func(q float64) float64 {
		i := int(q*float64(len(sample))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(sample) {
			i = len(sample) - 1
		}
		return ms(sample[i])
	}
	var sum float64
	for _, v := range sample {
		sum += float64(v)
	}
	return Percentiles{
		Count: len(sample),
		P50:   rank(0.50),
		P90:   rank(0.90),
		P99:   rank(0.99),
		P999:  rank(0.999),
		Max:   ms(sample[len(sample)-1]),
		Mean:  sum / float64(len(sample)) / 1e6,
	}
}

func ms(ns int64) float64 { return float64(ns/1000) / 1000 }

// payload is a value of exactly size bytes: the stamp (decimal nanoseconds) and a colon, then
// filler. A zero stamp gives pure filler.
func payload(stamp int64, size int) []byte {
	b := make([]byte, 0, size)
	if stamp != 0 {
		b = append(b, fmt.Sprintf("%019d:", stamp)...)
	}
	for len(b) < size {
		b = append(b, 'v')
	}
	return b[:size]
}

// stampOf reads the stamp back from a value written by payload (0 if it has none).
func stampOf(value []byte) int64 {
	if len(value) < 20 || value[19] != ':' {
		return 0
	}
	var n int64
	for _, c := range value[:19] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// deadlineAfter turns a duration flag into an absolute deadline.
func deadlineAfter(d time.Duration) time.Time { return time.Now().Add(d) }
