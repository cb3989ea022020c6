package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const mediaJSONv2 = "application/vnd.kafka.json.v2+json"

func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// httpFetch reads each partition URL (…/topics/T/partitions/P/records) from offset 0 with one
// reader per partition until -n records each, advancing by X-KBroker-Next-Offset, reading each
// body whole without parsing it (the client's share of the work stays small).
func httpFetch(args []string) (interface{}, error) {
	fs := flag.NewFlagSet("http-fetch", flag.ContinueOnError)
	urls := fs.String("urls", "", "partition records URLs, comma-separated")
	n := fs.Int64("n", 250_000, "records per partition")
	maxRecords := fs.Int("max-records", 1000, "max_records per fetch (0: broker default)")
	maxBytes := fs.Int("max-bytes", 1<<20, "max_bytes per fetch")
	accept := fs.String("accept", mediaJSONv2, "Accept header")
	batches := fs.Bool("batches", false, "the URLs are .../batches (raw stored batches): "+
		"advance by walking the batch headers")
	duration := fs.Duration("duration", 60*time.Second, "time bound")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	targets := splitList(*urls)
	client := newHTTPClient(len(targets))
	deadline := deadlineAfter(*duration)
	var records, size, requests atomic.Int64
	var timedOut atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, len(targets))
	start := time.Now()
	for _, u := range targets {
		wg.Add(1)
		go func(u string) {
			defer wg.Done()
			offset := int64(0)
			var buf []byte // this reader's body buffer, reused by every fetch
			for offset < *n {
				if time.Now().After(deadline) {
					timedOut.Store(true)
					return
				}
				q := fmt.Sprintf("%s?offset=%d&max_bytes=%d&timeout=0", u, offset, *maxBytes)
				if *maxRecords > 0 {
					q += "&max_records=" + strconv.Itoa(*maxRecords)
				}
				var next int64
				var body int
				var err error
				if *batches {
					next, body, err = getBatches(client, q, offset, &buf)
				} else {
					next, body, err = getRecords(client, q, *accept, &buf)
				}
				if err != nil {
					errs <- err
					return
				}
				requests.Add(1)
				if next <= offset {
					return // the partition has nothing more
				}
				records.Add(next - offset)
				size.Add(int64(body))
				offset = next
			}
		}(u)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return Throughput{
		Records: records.Load(), Bytes: size.Load(), Requests: requests.Load(),
		Seconds: elapsed, TimedOut: timedOut.Load(),
	}, nil
}

// get does GET url with the Accept header accept; the body and headers of a 200 answer, an
// error for any other status. The body is read whole into *buf, which is grown when too small
// and reused by the caller's next get (no allocation and copy per response, as io.ReadAll
// would make: that was most of this client's CPU on 200 KB answers).
func get(client *http.Client, url, accept string, buf *[]byte) ([]byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := readBody(resp, buf)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %d %.200s", url, resp.StatusCode, body)
	}
	return body, resp.Header, nil
}

// readBody reads resp's whole body into *buf (see get).
func readBody(resp *http.Response, buf *[]byte) ([]byte, error) {
	if resp.ContentLength < 0 { // chunked: let a buffer grow from *buf's space
		grown := bytes.NewBuffer((*buf)[:0])
		_, err := grown.ReadFrom(resp.Body)
		*buf = grown.Bytes()
		return *buf, err
	}
	if int64(cap(*buf)) < resp.ContentLength {
		*buf = make([]byte, resp.ContentLength)
	}
	// net/http's body reader stops at Content-Length and reports EOF with the last bytes, so
	// the connection goes back to the pool as io.ReadAll would have left it.
	body := (*buf)[:resp.ContentLength]
	if _, err := io.ReadFull(resp.Body, body); err != nil {
		return nil, err
	}
	return body, nil
}

func getRecords(client *http.Client, url, accept string, buf *[]byte) (int64, int, error) {
	body, header, err := get(client, url, accept, buf)
	if err != nil {
		return 0, 0, err
	}
	next, err := strconv.ParseInt(header.Get("X-KBroker-Next-Offset"), 10, 64)
	return next, len(body), err
}

// batchHeader is the size of a stored batch's header (kclient.protocol.BATCH_HEADER):
// base_offset int64 @0, batch_length int32 @8 (bytes after it), ..., record_count int32 @23.
const batchHeader = 61

// getBatches fetches raw stored batches and returns the offset after the last whole batch.
func getBatches(client *http.Client, url string, offset int64, buf *[]byte) (int64, int, error) {
	body, _, err := get(client, url, "application/vnd.kbroker.batches", buf)
	if err != nil {
		return 0, 0, err
	}
	next := offset
	for pos := 0; pos+batchHeader <= len(body); {
		base := int64(binary.BigEndian.Uint64(body[pos:]))
		length := int(binary.BigEndian.Uint32(body[pos+8:]))
		count := int64(binary.BigEndian.Uint32(body[pos+23:]))
		if pos+12+length > len(body) {
			break
		}
		if base+count > next {
			next = base + count
		}
		pos += 12 + length
	}
	return next, len(body), nil
}

// httpTarget is kbroker in the latency subcommand: producer worker w posts to partition
// w mod P at that partition's leader (acks from -acks); one long-polling stateless reader per
// partition starts at the partition's end offset.
type httpTarget struct {
	leaders []string
	topic   string
	acks    string
	client  *http.Client
	cancel  context.CancelFunc
	readers sync.WaitGroup
}

func newHTTPTarget(leaders []string, topic, acks string, workers int) (*httpTarget, error) {
	if len(leaders) == 0 {
		return nil, errors.New("kbroker: -urls names no partition leader")
	}
	return &httpTarget{
		leaders: leaders, topic: topic, acks: acks, client: newHTTPClient(workers + len(leaders)),
	}, nil
}

func (t *httpTarget) partitionURL(p int) string {
	return fmt.Sprintf("%s/topics/%s/partitions/%d", t.leaders[p], t.topic, p)
}

func (t *httpTarget) produce(worker int, values [][]byte) error {
	var body bytes.Buffer
	body.WriteString(`{"records":[`)
	for i, v := range values {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"value":"`)
		body.Write(v) // digits, ':' and filler: nothing to escape
		body.WriteString(`"}`)
	}
	body.WriteString(`]}`)
	url := t.partitionURL(worker%len(t.leaders)) + "?acks=" + t.acks
	resp, err := t.client.Post(url, mediaJSONv2, &body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(answer, []byte(`"error_code":4`)) ||
		bytes.Contains(answer, []byte(`"error_code":5`)) {
		return fmt.Errorf("produce: %d %.200s", resp.StatusCode, answer)
	}
	return nil
}

func (t *httpTarget) endOffset(p int) (int64, error) {
	resp, err := t.client.Get(t.partitionURL(p) + "/offsets")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var doc struct {
		End int64 `json:"end_offset"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return 0, err
	}
	return doc.End, nil
}

func (t *httpTarget) startConsumer(got func(int64)) error {
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	for p := range t.leaders {
		offset, err := t.endOffset(p)
		if err != nil {
			return err
		}
		t.readers.Add(1)
		go t.read(ctx, p, offset, got)
	}
	return nil
}

func (t *httpTarget) read(ctx context.Context, p int, offset int64, got func(int64)) {
	defer t.readers.Done()
	base := t.partitionURL(p) + "/records"
	for ctx.Err() == nil {
		url := fmt.Sprintf("%s?offset=%d&timeout=500&max_bytes=1048576", base, offset)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		req.Header.Set("Accept", mediaJSONv2)
		resp, err := t.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		var records []struct {
			Value string `json:"value"`
		}
		err = json.NewDecoder(resp.Body).Decode(&records)
		next, perr := strconv.ParseInt(resp.Header.Get("X-KBroker-Next-Offset"), 10, 64)
		resp.Body.Close()
		if err != nil || perr != nil || resp.StatusCode != http.StatusOK {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, r := range records {
			got(stampOf([]byte(r.Value)))
		}
		offset = next
	}
}

func (t *httpTarget) close() {
	if t.cancel != nil {
		t.cancel()
	}
	t.readers.Wait()
}
