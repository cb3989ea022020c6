package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// natsPub publishes -n messages of -size bytes over -conns connections, round-robin over
// -subjects. -window 1 publishes synchronously (wait for each PubAck); a larger window keeps
// that many async publishes in flight per connection (nats.go's PublishAsyncMaxPending).
func natsPub(args []string) (interface{}, error) {
	fs := flag.NewFlagSet("nats-pub", flag.ContinueOnError)
	url := fs.String("url", "nats://127.0.0.1:4222", "server URL(s), comma-separated")
	subjects := fs.String("subjects", "bench", "subjects, comma-separated")
	n := fs.Int64("n", 1_000_000, "messages in all")
	size := fs.Int("size", 100, "payload bytes")
	conns := fs.Int("conns", 1, "connections")
	window := fs.Int("window", 1000, "async publishes in flight per connection (1: sync)")
	duration := fs.Duration("duration", 60*time.Second, "time bound")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	subs := splitList(*subjects)
	data := payload(0, *size)
	deadline := deadlineAfter(*duration)
	var acked, failed atomic.Int64
	var timedOut atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, *conns)
	start := time.Now()
	for c := 0; c < *conns; c++ {
		share := *n / int64(*conns)
		if int64(c) < *n%int64(*conns) {
			share++
		}
		wg.Add(1)
		go func(c int, share int64) {
			defer wg.Done()
			nc, err := nats.Connect(*url)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			sent, bad, late, err := publishShare(nc, subs, c, share, *window, data, deadline)
			if err != nil {
				errs <- err
			}
			acked.Add(sent - bad)
			failed.Add(bad)
			if late {
				timedOut.Store(true)
			}
		}(c, share)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return Throughput{
		Records: acked.Load(), Bytes: acked.Load() * int64(*size), Requests: acked.Load(),
		Seconds: elapsed, Errors: failed.Load(), TimedOut: timedOut.Load(),
	}, nil
}

func publishShare(
	nc *nats.Conn, subs []string, c int, share int64, window int, data []byte, deadline time.Time,
) (sent, bad int64, late bool, err error) {
	var failed atomic.Int64
	js, err := nc.JetStream(
		nats.PublishAsyncMaxPending(window),
		nats.PublishAsyncErrHandler(func(nats.JetStream, *nats.Msg, error) { failed.Add(1) }),
	)
	if err != nil {
		return 0, 0, false, err
	}
	for i := int64(0); i < share; i++ {
		if i%256 == 0 && time.Now().After(deadline) {
			late = true
			break
		}
		subj := subs[(int(i)+c)%len(subs)]
		if window <= 1 {
			if _, perr := js.Publish(subj, data); perr != nil {
				failed.Add(1)
			}
			sent++
			continue
		}
		for {
			_, perr := js.PublishAsync(subj, data)
			if perr == nil {
				break
			}
			if !strings.Contains(perr.Error(), "stalled") {
				return sent, failed.Load(), late, perr
			}
			if time.Now().After(deadline) {
				return sent, failed.Load(), true, nil
			}
		}
		sent++
	}
	if window > 1 {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Until(deadline) + 5*time.Second):
			late = true
			failed.Add(int64(js.PublishAsyncPending()))
		}
	}
	return sent, failed.Load(), late, nil
}

// natsFetch reads -n messages through the durable pull consumer -consumer of -stream with
// -fetchers concurrent fetchers of -batch messages each.
func natsFetch(args []string) (interface{}, error) {
	fs := flag.NewFlagSet("nats-fetch", flag.ContinueOnError)
	url := fs.String("url", "nats://127.0.0.1:4222", "server URL(s)")
	stream := fs.String("stream", "bench", "stream")
	consumer := fs.String("consumer", "reader", "durable pull consumer (must exist)")
	subject := fs.String("subject", "bench", "filter subject of the consumer")
	n := fs.Int64("n", 1_000_000, "messages in all")
	batch := fs.Int("batch", 1000, "messages per fetch")
	fetchers := fs.Int("fetchers", 4, "concurrent fetchers")
	duration := fs.Duration("duration", 60*time.Second, "time bound")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(*url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return nil, err
	}
	deadline := deadlineAfter(*duration)
	var records, size, requests, failures atomic.Int64
	var timedOut atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, *fetchers)
	start := time.Now()
	for f := 0; f < *fetchers; f++ {
		sub, err := js.PullSubscribe(*subject, *consumer, nats.Bind(*stream, *consumer))
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func(sub *nats.Subscription) {
			defer wg.Done()
			for records.Load() < *n {
				if time.Now().After(deadline) {
					timedOut.Store(true)
					return
				}
				msgs, err := sub.Fetch(*batch, nats.MaxWait(2*time.Second))
				requests.Add(1)
				if errors.Is(err, nats.ErrTimeout) {
					failures.Add(1)
					if failures.Load() > 3 {
						return // the stream is exhausted
					}
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for _, m := range msgs {
					size.Add(int64(len(m.Data)))
				}
				records.Add(int64(len(msgs)))
			}
		}(sub)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("fetch: %w", err)
	default:
	}
	return Throughput{
		Records: records.Load(), Bytes: size.Load(), Requests: requests.Load(),
		Seconds: elapsed, TimedOut: timedOut.Load(),
	}, nil
}

// natsTarget is the JetStream side of the latency subcommand: one connection per producer
// worker (async publishes of one batch, then wait for all its PubAcks) and one ordered push
// consumer per subject.
type natsTarget struct {
	url      string
	subjects []string
	conns    []*nats.Conn
	js       []nats.JetStreamContext
	subs     []*nats.Subscription
	consumer *nats.Conn
}

func newNatsTarget(url string, subjects []string, workers, batch int) (*natsTarget, error) {
	t := &natsTarget{url: url, subjects: subjects}
	for w := 0; w < workers; w++ {
		nc, err := nats.Connect(url)
		if err != nil {
			t.close()
			return nil, err
		}
		t.conns = append(t.conns, nc)
		js, err := nc.JetStream(nats.PublishAsyncMaxPending(batch * 4))
		if err != nil {
			t.close()
			return nil, err
		}
		t.js = append(t.js, js)
	}
	return t, nil
}

func (t *natsTarget) produce(worker int, values [][]byte) error {
	js := t.js[worker]
	subj := t.subjects[worker%len(t.subjects)]
	futures := make([]nats.PubAckFuture, 0, len(values))
	for _, v := range values {
		f, err := js.PublishAsync(subj, v)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-time.After(10 * time.Second):
			return errors.New("no PubAck within 10 s")
		}
	}
	return nil
}

func (t *natsTarget) startConsumer(got func(int64)) error {
	nc, err := nats.Connect(t.url)
	if err != nil {
		return err
	}
	t.consumer = nc
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	for _, subj := range t.subjects {
		sub, err := js.Subscribe(subj, func(m *nats.Msg) { got(stampOf(m.Data)) },
			nats.OrderedConsumer(), nats.DeliverNew())
		if err != nil {
			return err
		}
		t.subs = append(t.subs, sub)
	}
	return nil
}

func (t *natsTarget) close() {
	for _, s := range t.subs {
		_ = s.Unsubscribe()
	}
	if t.consumer != nil {
		t.consumer.Close()
	}
	for _, nc := range t.conns {
		nc.Close()
	}
}
