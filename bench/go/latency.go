package main

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// target is one system under the latency test. produce sends one batch from producer worker
// `worker` (each worker owns its connection) and returns once the system acknowledged it;
// startConsumer positions consumers at the end of the data and calls got(stamp) for every
// record received from then on, from any goroutine; close releases everything.
type target interface {
	produce(worker int, values [][]byte) error
	startConsumer(got func(stamp int64)) error
	close()
}

// LatencyResult is the output of the latency subcommand. Latencies are measured from each
// request's *scheduled* send time (so a stalled system cannot hide queueing: no coordinated
// omission): Ack until the produce is acknowledged, EndToEnd until a consumer holds the record.
type LatencyResult struct {
	System          string      `json:"system"`
	RatePerSecond   float64     `json:"requests_per_second"`
	Batch           int         `json:"records_per_request"`
	Workers         int         `json:"connections"`
	Seconds         float64     `json:"seconds"`
	Warmup          float64     `json:"warmup_seconds"`
	Requests        int64       `json:"requests"`
	RecordsSent     int64       `json:"records_sent"`
	RecordsReceived int64       `json:"records_received"`
	Errors          int64       `json:"errors"`
	Ack             Percentiles `json:"ack"`
	EndToEnd        Percentiles `json:"e2e"`
	SendLag         Percentiles `json:"send_lag"`
}

type sampleSet struct {
	mu     sync.Mutex
	values []int64
}

func (s *sampleSet) add(v int64) {
	s.mu.Lock()
	s.values = append(s.values, v)
	s.mu.Unlock()
}

// latency runs an open-loop producer: -rate requests per second of -batch records each, sent
// on schedule by -conns workers (a request waits for a free worker if all are busy, and that
// wait counts in its latency), for -duration; samples of the first -warmup are dropped.
func latency(args []string) (interface{}, error) {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	system := fs.String("system", "kbroker", "kbroker | redis | nats")
	rate := fs.Float64("rate", 200, "requests per second")
	batch := fs.Int("batch", 100, "records per request")
	conns := fs.Int("conns", 8, "producer connections (workers)")
	size := fs.Int("size", 100, "value bytes")
	duration := fs.Duration("duration", 20*time.Second, "length of the open-loop run")
	warmup := fs.Duration("warmup", 2*time.Second, "initial samples to drop")
	urls := fs.String("urls", "", "kbroker: leader base URLs, one per partition")
	topic := fs.String("topic", "latency", "kbroker topic")
	acks := fs.String("acks", "all", "kbroker: acks of every produce (1 or all)")
	addr := fs.String("addr", "127.0.0.1:6379", "redis: host:port")
	key := fs.String("key", "latency", "redis: stream key")
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "nats: server URL(s)")
	subjects := fs.String("subjects", "latency", "nats: subjects, one per stream")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var t target
	var err error
	switch *system {
	case "kbroker":
		t, err = newHTTPTarget(splitList(*urls), *topic, *acks, *conns)
	case "redis":
		t, err = newRedisTarget(*addr, *key, *conns)
	case "nats":
		t, err = newNatsTarget(*natsURL, splitList(*subjects), *conns, *batch)
	default:
		err = fmt.Errorf("unknown system %q", *system)
	}
	if err != nil {
		return nil, err
	}
	defer t.close()
	return runOpenLoop(t, *system, *rate, *batch, *conns, *size, *duration, *warmup)
}

func runOpenLoop(
	t target, system string, rate float64, batch, conns, size int,
	duration, warmup time.Duration,
) (*LatencyResult, error) {
	var ack, e2e, lag sampleSet
	var received, errorsSeen, requests atomic.Int64
	start := time.Now()
	measureFrom := start.Add(warmup).UnixNano()
	err := t.startConsumer(func(stamp int64) {
		if stamp == 0 {
			return
		}
		received.Add(1)
		if stamp >= measureFrom {
			e2e.add(time.Now().UnixNano() - stamp)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	total := int(rate * duration.Seconds())
	jobs := make(chan time.Time, total)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			values := make([][]byte, batch)
			for due := range jobs {
				stamp := due.UnixNano()
				lag.add(time.Now().UnixNano() - stamp)
				for i := range values {
					values[i] = payload(stamp, size)
				}
				requests.Add(1)
				if err := t.produce(w, values); err != nil {
					errorsSeen.Add(1)
					continue
				}
				if stamp >= measureFrom {
					ack.add(time.Now().UnixNano() - stamp)
				}
			}
		}(w)
	}
	interval := time.Duration(float64(time.Second) / rate)
	begin := time.Now()
	for i := 0; i < total; i++ {
		due := begin.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		jobs <- due
	}
	close(jobs)
	wg.Wait()
	sent := requests.Load() * int64(batch)
	drain := time.Now().Add(10 * time.Second)
	for received.Load() < sent-errorsSeen.Load()*int64(batch) && time.Now().Before(drain) {
		time.Sleep(20 * time.Millisecond)
	}
	return &LatencyResult{
		System: system, RatePerSecond: rate, Batch: batch, Workers: conns,
		Seconds: duration.Seconds(), Warmup: warmup.Seconds(),
		Requests: requests.Load(), RecordsSent: sent, RecordsReceived: received.Load(),
		Errors:   errorsSeen.Load(),
		Ack:      summarise(ack.values),
		EndToEnd: summarise(e2e.values),
		SendLag:  summarise(lag.values),
	}, nil
}
