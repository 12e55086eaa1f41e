// nats_bench: the NATS JetStream peer of Ordo's broker benchmark (bench/run-broker-bench).
//
//	nats_bench -mode publish -messages N   N messages with async publish acks, at most
//	                                       -window unacknowledged; msgs/s and MB/s from the
//	                                       first publish to the last ack
//	nats_bench -mode latency -rate R -duration S
//	                                       one synchronous Publish (a round trip to the stream's
//	                                       ack) per tick of a fixed rate; the time from each
//	                                       publish to its ack, after -warmup seconds
//
// Both first (re)create a file-storage stream (-stream, subject -subject) and print one JSON
// object on stdout. Built in GOPATH mode against Debian's golang-github-nats-io-go-nats-dev.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "nats_bench: "+format+"\n", args...)
	os.Exit(1)
}

// CPU seconds (user + system) of this process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	mode := flag.String("mode", "publish", "publish or latency")
	stream := flag.String("stream", "BENCH", "stream name")
	subject := flag.String("subject", "bench", "subject the stream captures")
	messages := flag.Int("messages", 1000000, "publish: message count")
	size := flag.Int("value-size", 100, "payload bytes")
	window := flag.Int("window", 4096, "publish: most async publishes awaiting an ack")
	rate := flag.Float64("rate", 10000, "latency: messages per second")
	duration := flag.Float64("duration", 10, "latency: seconds measured")
	warmup := flag.Float64("warmup", 1, "latency: seconds sent first and not counted")
	label := flag.String("label", "", "copied into the JSON output")
	flag.Parse()

	nc, err := nats.Connect(*url, nats.Name("ordo-broker-bench"))
	if err != nil {
		fail("connect %s: %v", *url, err)
	}
	defer nc.Close()
	var asyncErrors int64
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(*window),
		nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, err error) {
			if atomic.AddInt64(&asyncErrors, 1) <= 5 {
				fmt.Fprintf(os.Stderr, "nats_bench: async publish: %v\n", err)
			}
		}))
	if err != nil {
		fail("jetstream: %v", err)
	}
	_ = js.DeleteStream(*stream)
	if _, err := js.AddStream(&nats.StreamConfig{
		Name: *stream, Subjects: []string{*subject}, Storage: nats.FileStorage,
	}); err != nil {
		fail("add stream: %v", err)
	}
	payload := make([]byte, *size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	out := map[string]interface{}{"target": "nats", "mode": *mode, "value_bytes": *size}
	if *label != "" {
		out["label"] = *label
	}

	switch *mode {
	case "publish":
		cpu0 := cpuSeconds()
		start := time.Now()
		for i := 0; i < *messages; i++ {
			if _, err := js.PublishAsync(*subject, payload); err != nil {
				fail("publish: %v", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(180 * time.Second):
			fail("acks did not arrive within 180 s")
		}
		secs := time.Since(start).Seconds()
		out["client_cpu_s"] = cpuSeconds() - cpu0
		info, err := js.StreamInfo(*stream)
		if err != nil {
			fail("stream info: %v", err)
		}
		errs := atomic.LoadInt64(&asyncErrors)
		out["messages"] = *messages
		out["window"] = *window
		out["seconds"] = secs
		out["msgs_per_s"] = float64(*messages) / secs
		out["mb_per_s"] = float64(*messages) * float64(*size) / 1e6 / secs
		out["stream_messages"] = info.State.Msgs
		if info.State.Msgs != uint64(*messages) && errs == 0 {
			errs = 1
		}
		out["errors"] = errs
	case "latency":
		interval := time.Duration(float64(time.Second) / *rate)
		warm := int(*warmup * *rate)
		total := warm + int(*duration**rate)
		lat := make([]time.Duration, 0, total)
		var maxLag time.Duration
		late := 0
		begin := time.Now().Add(time.Millisecond)
		var first, last time.Time
		for i := 0; i < total; i++ {
			target := begin.Add(time.Duration(i) * interval)
			if d := time.Until(target); d > 0 {
				time.Sleep(d)
			}
			t := time.Now()
			if _, err := js.Publish(*subject, payload); err != nil {
				fail("publish: %v", err)
			}
			if i >= warm {
				if i == warm {
					first = t
				}
				lag := t.Sub(target)
				if lag > maxLag {
					maxLag = lag
				}
				if lag > interval {
					late++
				}
				lat = append(lat, time.Since(t))
			}
			last = t
		}
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		pct := func(p float64) float64 {
			i := int(p / 100 * float64(len(lat)))
			if i >= len(lat) {
				i = len(lat) - 1
			}
			return float64(lat[i].Nanoseconds()) / 1000
		}
		var sum time.Duration
		for _, v := range lat {
			sum += v
		}
		out["rate"] = *rate
		out["duration_s"] = *duration
		out["count"] = len(lat)
		out["achieved_rate"] = float64(len(lat)) / last.Sub(first).Seconds()
		out["p50_us"] = pct(50)
		out["p90_us"] = pct(90)
		out["p99_us"] = pct(99)
		out["p999_us"] = pct(99.9)
		out["max_us"] = float64(lat[len(lat)-1].Nanoseconds()) / 1000
		out["mean_us"] = float64(sum.Nanoseconds()) / float64(len(lat)) / 1000
		out["max_send_lag_us"] = float64(maxLag.Nanoseconds()) / 1000
		out["late_sends"] = late
		out["errors"] = 0
	default:
		fail("unknown -mode %s", *mode)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
