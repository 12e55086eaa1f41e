// Sarama (Debian's golang-github-shopify-sarama-dev, 1.22) against an ordo broker: cluster
// admin, SyncProducer (keys, headers, timestamps, every acks setting, gzip/snappy/lz4), the
// partition consumer (no consumer groups: the broker has none yet) and offset look-ups.
//
// Built in GOPATH mode by run_test.py (GO111MODULE=off, GOPATH=/usr/share/gocode) and run as
//
//	ORDO_BOOTSTRAP=127.0.0.1:PORT ./sarama_test
//
// It prints one line per step and a closing "sarama: N passed, N failed"; the exit code is 0
// only when every step passed. A failed set-up step (connect, create topics) ends the run.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

const (
	events     = "sarama-events"     // 3 partitions, uncompressed
	compressed = "sarama-compressed" // 3 partitions: gzip, snappy, lz4
	configured = "sarama-configured" // configs set at creation, altered, then deleted
	recvWait   = 10 * time.Second
)

// version: what this broker speaks with Sarama 1.22: Produce v3, Fetch v4, Metadata v5,
// ListOffsets v1, CreateTopics v2, DeleteTopics v1 (Fetch starts at v4 on this broker).
var version = sarama.V2_1_0_0

// record is what was produced and must be read back.
type record struct {
	offset    int64
	key       []byte // nil: no key
	value     []byte
	headers   []sarama.RecordHeader
	timestamp time.Time
	batch     string // records that went in one compressed batch share it; "" otherwise
}

type tp struct {
	topic     string
	partition int32
}

var (
	bootstrap string
	t0        time.Time
	model     = map[tp][]record{}
	passed    int
	failed    int
)

func next(topic string, p int32) int64 {
	recs := model[tp{topic, p}]
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].offset + 1
}

// step runs one check; a failure is reported and the run goes on.
func step(name string, fn func() error) bool {
	start := time.Now()
	err := fn()
	ms := time.Since(start).Milliseconds()
	if err == nil {
		passed++
		fmt.Printf("ok   %s (%d ms)\n", name, ms)
		return true
	}
	failed++
	fmt.Printf("FAIL %s (%d ms)\n     %v\n", name, ms, err)
	return false
}

// must runs a step that later steps cannot do without: a failure ends the run.
func must(name string, fn func() error) {
	if !step(name, fn) {
		finish()
	}
}

func finish() {
	fmt.Printf("sarama: %d passed, %d failed\n", passed, failed)
	if failed > 0 || passed == 0 {
		os.Exit(1)
	}
	os.Exit(0)
}

func newConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = version
	c.ClientID = "ordo-sarama-test"
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 15 * time.Second
	c.Net.WriteTimeout = 5 * time.Second
	c.Metadata.Retry.Max = 3
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Retry.Max = 2
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Consumer.Return.Errors = true
	c.Consumer.MaxWaitTime = 250 * time.Millisecond
	c.Admin.Timeout = 10 * time.Second
	return c
}

func hdrs(kv ...string) []sarama.RecordHeader {
	var h []sarama.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, sarama.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

func bytesOf(e sarama.Encoder) []byte {
	if e == nil {
		return nil
	}
	b, err := e.Encode()
	if err != nil {
		log.Fatalf("encode: %v", err)
	}
	return b
}

// produce sends msgs with a SyncProducer made from cfg (one SendMessages call) and checks that
// every partition's records got the next offsets in order; then adds them to the model.
// acks=0 has no offsets to check: the model is filled in from the messages' order.
func produce(cfg *sarama.Config, msgs []*sarama.ProducerMessage, batch string) error {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
	if err != nil {
		return fmt.Errorf("NewSyncProducer: %w", err)
	}
	defer p.Close()
	if err := p.SendMessages(msgs); err != nil {
		if pe, ok := err.(sarama.ProducerErrors); ok && len(pe) > 0 {
			return fmt.Errorf("SendMessages: %d errors, first: %v", len(pe), pe[0].Err)
		}
		return fmt.Errorf("SendMessages: %w", err)
	}
	want := map[tp]int64{}
	for _, m := range msgs {
		k := tp{m.Topic, m.Partition}
		if _, ok := want[k]; !ok {
			want[k] = next(m.Topic, m.Partition)
		}
		if cfg.Producer.RequiredAcks != sarama.NoResponse && m.Offset != want[k] {
			return fmt.Errorf("%s/%d: offset %d, want %d (offsets must be contiguous)",
				m.Topic, m.Partition, m.Offset, want[k])
		}
		b := ""
		if batch != "" {
			b = fmt.Sprintf("%s/%d", batch, m.Partition)
		}
		model[k] = append(model[k], record{want[k], bytesOf(m.Key), bytesOf(m.Value), m.Headers,
			m.Timestamp, b})
		want[k]++
	}
	return nil
}

func msg(topic string, partition int32, key, value string, ts time.Time, h ...string) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic, Partition: partition, Value: sarama.StringEncoder(value),
		Headers: hdrs(h...), Timestamp: ts}
	if key != "" {
		m.Key = sarama.StringEncoder(key)
	}
	return m
}

// consume reads n messages of topic/partition from offset with a partition consumer.
func consume(consumer sarama.Consumer, topic string, partition int32, offset int64, n int) ([]*sarama.ConsumerMessage, error) {
	pc, err := consumer.ConsumePartition(topic, partition, offset)
	if err != nil {
		return nil, fmt.Errorf("ConsumePartition(%s, %d, %d): %w", topic, partition, offset, err)
	}
	defer pc.Close()
	var got []*sarama.ConsumerMessage
	timeout := time.After(recvWait)
	for len(got) < n {
		select {
		case m := <-pc.Messages():
			got = append(got, m)
		case e := <-pc.Errors():
			return got, fmt.Errorf("%s/%d: consumer error: %v", topic, partition, e.Err)
		case <-timeout:
			return got, fmt.Errorf("%s/%d: %d of %d messages after %v", topic, partition, len(got), n, recvWait)
		}
	}
	// Nothing more may arrive.
	select {
	case m := <-pc.Messages():
		return got, fmt.Errorf("%s/%d: unexpected message at offset %d", topic, partition, m.Offset)
	case <-time.After(300 * time.Millisecond):
	}
	return got, nil
}

func sameHeaders(got []*sarama.RecordHeader, want []sarama.RecordHeader) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
			return false
		}
	}
	return true
}

func fmtHeaders(h []*sarama.RecordHeader) string {
	s := "["
	for _, x := range h {
		s += fmt.Sprintf("%q=%q ", x.Key, x.Value)
	}
	return s + "]"
}

// checkRecords compares consumed messages with the model's records.
func checkRecords(topic string, partition int32, got []*sarama.ConsumerMessage, want []record) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s/%d: %d messages, want %d", topic, partition, len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		where := fmt.Sprintf("%s/%d offset %d", topic, partition, w.offset)
		switch {
		case g.Topic != topic || g.Partition != partition:
			return fmt.Errorf("%s: came from %s/%d", where, g.Topic, g.Partition)
		case g.Offset != w.offset:
			return fmt.Errorf("%s: message %d has offset %d", where, i, g.Offset)
		case !bytes.Equal(g.Key, w.key) || (g.Key == nil) != (w.key == nil):
			return fmt.Errorf("%s: key %q (nil %v), want %q (nil %v)", where, g.Key, g.Key == nil, w.key, w.key == nil)
		case !bytes.Equal(g.Value, w.value):
			return fmt.Errorf("%s: value %.40q, want %.40q", where, g.Value, w.value)
		case !sameHeaders(g.Headers, w.headers):
			return fmt.Errorf("%s: headers %s, want %v", where, fmtHeaders(g.Headers), w.headers)
		case !g.Timestamp.Equal(w.timestamp):
			return fmt.Errorf("%s: timestamp %v, want %v", where, g.Timestamp, w.timestamp)
		}
	}
	return nil
}

// expectedAt: Kafka's answer to ListOffsets by timestamp: the first record with a timestamp
// >= ts (also inside a compressed batch), -1 if none.
func expectedAt(topic string, p int32, ts time.Time) int64 {
	for _, r := range model[tp{topic, p}] {
		if !r.timestamp.Before(ts) {
			return r.offset
		}
	}
	return -1
}

func delta(d time.Duration) string {
	if d < 0 {
		return d.String()
	}
	return "+" + d.String()
}

func main() {
	log.SetFlags(0)
	bootstrap = os.Getenv("ORDO_BOOTSTRAP")
	if bootstrap == "" {
		log.Fatal("ORDO_BOOTSTRAP is not set (host:port of an ordo broker)")
	}
	if os.Getenv("ORDO_SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Ltime|log.Lmicroseconds)
	}
	t0 = time.Unix(time.Now().Unix()-3600, 0) // an hour ago, whole seconds

	cfg := newConfig()
	var (
		admin    sarama.ClusterAdmin
		client   sarama.Client
		consumer sarama.Consumer
		err      error
	)

	must("ClusterAdmin connects; DescribeCluster", func() error {
		admin, err = sarama.NewClusterAdmin([]string{bootstrap}, cfg)
		if err != nil {
			return err
		}
		// (DescribeCluster sends Metadata v0, which has no controller id; a client asks v5.)
		brokers, _, err := admin.DescribeCluster()
		if err != nil {
			return err
		}
		cl, err := sarama.NewClient([]string{bootstrap}, cfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		controller, err := cl.Controller()
		if err != nil {
			return err
		}
		if len(brokers) != 1 || brokers[0].Addr() != bootstrap || brokers[0].ID() != controller.ID() ||
			controller.Addr() != bootstrap {
			return fmt.Errorf("brokers %v controller %d at %s, want one at %s", brokers, controller.ID(),
				controller.Addr(), bootstrap)
		}
		return nil
	})

	must("CreateTopic: three topics, one with configs; errors for an existing topic and 0 partitions", func() error {
		retention := "3600000"
		for _, t := range []struct {
			name string
			d    sarama.TopicDetail
		}{
			{events, sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}},
			{compressed, sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}},
			{configured, sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
				ConfigEntries: map[string]*string{"retention.ms": &retention}}},
		} {
			if err := admin.CreateTopic(t.name, &t.d, false); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
		err := admin.CreateTopic(events, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
		if te, ok := err.(*sarama.TopicError); !ok || te.Err != sarama.ErrTopicAlreadyExists {
			return fmt.Errorf("creating %s again: %v, want TOPIC_ALREADY_EXISTS", events, err)
		}
		err = admin.CreateTopic("sarama-bad", &sarama.TopicDetail{NumPartitions: 0, ReplicationFactor: 1}, false)
		if te, ok := err.(*sarama.TopicError); !ok || te.Err != sarama.ErrInvalidPartitions {
			return fmt.Errorf("0 partitions: %v, want INVALID_PARTITIONS", err)
		}
		if err := admin.CreateTopic("sarama-validate-only", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, true); err != nil {
			return fmt.Errorf("validateOnly: %w", err)
		}
		return nil
	})

	step("DescribeTopics and ListTopics", func() error {
		md, err := admin.DescribeTopics([]string{events, configured})
		if err != nil {
			return err
		}
		parts := map[string]int{}
		for _, t := range md {
			if t.Err != sarama.ErrNoError {
				return fmt.Errorf("%s: %v", t.Name, t.Err)
			}
			parts[t.Name] = len(t.Partitions)
			for _, p := range t.Partitions {
				if p.Err != sarama.ErrNoError || p.Leader != 0 || len(p.Replicas) != 1 || len(p.Isr) != 1 {
					return fmt.Errorf("%s/%d: err %v leader %d replicas %v isr %v", t.Name, p.ID, p.Err, p.Leader, p.Replicas, p.Isr)
				}
			}
		}
		if parts[events] != 3 || parts[configured] != 2 {
			return fmt.Errorf("partition counts %v", parts)
		}
		topics, err := admin.ListTopics()
		if err != nil {
			return err
		}
		for _, name := range []string{events, compressed, configured} {
			if _, ok := topics[name]; !ok {
				return fmt.Errorf("ListTopics lacks %s: %v", name, topics)
			}
		}
		if _, ok := topics["sarama-validate-only"]; ok {
			return errors.New("a validateOnly CreateTopic created the topic")
		}
		ce := topics[configured].ConfigEntries
		if v, ok := ce["retention.ms"]; !ok || *v != "3600000" || len(ce) != 1 {
			return fmt.Errorf("ListTopics %s: non-default configs %v", configured, ce)
		}
		return nil
	})

	step("DescribeConfig; AlterConfig; DescribeConfig again", func() error {
		get := func() (map[string]sarama.ConfigEntry, error) {
			entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: configured})
			if err != nil {
				return nil, err
			}
			m := map[string]sarama.ConfigEntry{}
			for _, e := range entries {
				m[e.Name] = e
			}
			return m, nil
		}
		m, err := get()
		if err != nil {
			return err
		}
		if e := m["retention.ms"]; e.Value != "3600000" || e.Default {
			return fmt.Errorf("retention.ms: %+v", e)
		}
		if e, ok := m["segment.bytes"]; !ok || !e.Default {
			return fmt.Errorf("segment.bytes: %+v (present %v)", e, ok)
		}
		v := "7200000"
		if err := admin.AlterConfig(sarama.TopicResource, configured, map[string]*string{"retention.ms": &v}, false); err != nil {
			return err
		}
		if m, err = get(); err != nil {
			return err
		}
		if e := m["retention.ms"]; e.Value != "7200000" || e.Default {
			return fmt.Errorf("after AlterConfig, retention.ms: %+v", e)
		}
		bad := "forever"
		if err := admin.AlterConfig(sarama.TopicResource, configured, map[string]*string{"retention.ms": &bad}, false); err == nil {
			return errors.New("AlterConfig retention.ms=forever was accepted")
		}
		if _, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: "sarama-missing"}); err == nil {
			return errors.New("DescribeConfig of a missing topic: no error")
		}
		return nil
	})

	step("SyncProducer acks=all: one SendMessage per record, keys, headers, timestamps", func() error {
		p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
		if err != nil {
			return err
		}
		defer p.Close()
		for i := 0; i < 30; i++ {
			part := int32(i % 3)
			m := msg(events, part, fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i),
				t0.Add(time.Duration(i)*time.Second), "idx", strconv.Itoa(i), "source", "sarama")
			gotP, gotO, err := p.SendMessage(m)
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			if gotP != part || gotO != next(events, part) {
				return fmt.Errorf("record %d: partition %d offset %d, want %d %d", i, gotP, gotO, part, next(events, part))
			}
			k := tp{events, part}
			model[k] = append(model[k], record{gotO, bytesOf(m.Key), bytesOf(m.Value), m.Headers, m.Timestamp, ""})
		}
		return nil
	})

	step("SyncProducer acks=all: SendMessages, 60 records in one call", func() error {
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 60; i++ {
			msgs = append(msgs, msg(events, int32(i%3), fmt.Sprintf("many-%d", i), fmt.Sprintf("batch-value-%d", i),
				t0.Add(100*time.Second+time.Duration(i)*time.Second), "n", strconv.Itoa(i)))
		}
		return produce(cfg, msgs, "")
	})

	step("SyncProducer acks=1, hash partitioner: a key always lands in one partition", func() error {
		c := newConfig()
		c.Producer.RequiredAcks = sarama.WaitForLocal
		c.Producer.Partitioner = sarama.NewHashPartitioner
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 20; i++ {
			msgs = append(msgs, msg(events, -1, fmt.Sprintf("user-%d", i%5), fmt.Sprintf("keyed-%d", i),
				t0.Add(200*time.Second+time.Duration(i)*time.Second), "kind", "keyed", "utf8-ключ", "значение"))
		}
		// Offsets are checked per partition in produce(); the partition each key went to here.
		p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
		if err != nil {
			return err
		}
		defer p.Close()
		if err := p.SendMessages(msgs); err != nil {
			return err
		}
		keyPart := map[string]int32{}
		want := map[int32]int64{}
		for _, m := range msgs {
			key := string(bytesOf(m.Key))
			if p, ok := keyPart[key]; ok && p != m.Partition {
				return fmt.Errorf("key %s in partitions %d and %d", key, p, m.Partition)
			}
			keyPart[key] = m.Partition
			if _, ok := want[m.Partition]; !ok {
				want[m.Partition] = next(events, m.Partition)
			}
			if m.Offset != want[m.Partition] {
				return fmt.Errorf("%s/%d: offset %d, want %d", events, m.Partition, m.Offset, want[m.Partition])
			}
			want[m.Partition]++
			k := tp{events, m.Partition}
			model[k] = append(model[k], record{m.Offset, bytesOf(m.Key), bytesOf(m.Value), m.Headers, m.Timestamp, ""})
		}
		return nil
	})

	step("SyncProducer: a null key, an empty value, a 200 kB value", func() error {
		big := make([]byte, 200*1000)
		for i := range big {
			big[i] = byte('a' + i%26)
		}
		msgs := []*sarama.ProducerMessage{
			msg(events, 1, "", "no-key", t0.Add(300*time.Second)),
			msg(events, 1, "empty-value", "", t0.Add(301*time.Second)),
			{Topic: events, Partition: 1, Key: sarama.StringEncoder("big"), Value: sarama.ByteEncoder(big),
				Timestamp: t0.Add(302 * time.Second)},
		}
		return produce(cfg, msgs, "")
	})

	step("SyncProducer acks=0: the records arrive", func() error {
		c := newConfig()
		c.Producer.RequiredAcks = sarama.NoResponse
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 5; i++ {
			msgs = append(msgs, msg(events, 2, fmt.Sprintf("fire-%d", i), fmt.Sprintf("forget-%d", i),
				t0.Add(400*time.Second+time.Duration(i)*time.Millisecond), "acks", "0"))
		}
		if err := produce(c, msgs, ""); err != nil {
			return err
		}
		cl, err := sarama.NewClient([]string{bootstrap}, cfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			hw, err := cl.GetOffset(events, 2, sarama.OffsetNewest)
			if err == nil && hw == next(events, 2) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("high watermark %d (err %v), want %d", hw, err, next(events, 2))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	for i, codec := range []sarama.CompressionCodec{sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4} {
		part := int32(i)
		codec := codec
		step(fmt.Sprintf("SyncProducer %v: 50 records in compressed batches to partition %d", codec, part), func() error {
			c := newConfig()
			c.Producer.Compression = codec
			c.Producer.Flush.Messages = 25
			c.Producer.Flush.Frequency = 50 * time.Millisecond
			var msgs []*sarama.ProducerMessage
			for j := 0; j < 50; j++ {
				msgs = append(msgs, msg(compressed, part, fmt.Sprintf("%v-%d", codec, j),
					fmt.Sprintf("%v-value-%d-%s", codec, j, bytes.Repeat([]byte("z"), 100)),
					t0.Add(time.Duration(j)*time.Second), "codec", codec.String(), "j", strconv.Itoa(j)))
			}
			return produce(c, msgs, codec.String())
		})
	}

	step("producing to a missing topic or partition fails", func() error {
		c := newConfig()
		c.Producer.Retry.Max = 0
		c.Metadata.Retry.Max = 0
		p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
		if err != nil {
			return err
		}
		defer p.Close()
		if _, _, err := p.SendMessage(msg(events, 7, "k", "v", time.Now())); err == nil {
			return errors.New("partition 7 of a 3-partition topic: no error")
		}
		return nil
	})

	must("client and partition consumer connect", func() error {
		client, err = sarama.NewClient([]string{bootstrap}, cfg)
		if err != nil {
			return err
		}
		consumer, err = sarama.NewConsumerFromClient(client)
		return err
	})

	step("ConsumePartition from OffsetOldest: every record, in order, as produced", func() error {
		var keys []tp
		for k := range model {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			return keys[i].topic < keys[j].topic || keys[i].topic == keys[j].topic && keys[i].partition < keys[j].partition
		})
		for _, k := range keys {
			want := model[k]
			got, err := consume(consumer, k.topic, k.partition, sarama.OffsetOldest, len(want))
			if err != nil {
				return err
			}
			if err := checkRecords(k.topic, k.partition, got, want); err != nil {
				return err
			}
		}
		return nil
	})

	step("ConsumePartition from an offset inside a batch and inside a compressed batch", func() error {
		for _, c := range []struct {
			k    tp
			from int64
		}{{tp{events, 0}, 15}, {tp{compressed, 0}, 37}, {tp{compressed, 1}, 37}, {tp{compressed, 2}, 37}} {
			k := c.k
			want := model[k][c.from:]
			got, err := consume(consumer, k.topic, k.partition, c.from, len(want))
			if err != nil {
				return err
			}
			if err := checkRecords(k.topic, k.partition, got, want); err != nil {
				return err
			}
		}
		return nil
	})

	step("ConsumePartition from OffsetNewest receives a record produced afterwards", func() error {
		pc, err := consumer.ConsumePartition(events, 0, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		defer pc.Close()
		time.Sleep(300 * time.Millisecond) // the consumer is waiting in a Fetch
		m := msg(events, 0, "live", "live-value", time.Now().Truncate(time.Millisecond), "live", "1")
		sent := time.Now()
		if err := produce(cfg, []*sarama.ProducerMessage{m}, ""); err != nil {
			return err
		}
		select {
		case g := <-pc.Messages():
			want := model[tp{events, 0}]
			if err := checkRecords(events, 0, []*sarama.ConsumerMessage{g}, want[len(want)-1:]); err != nil {
				return err
			}
			fmt.Printf("     (delivered %v after the produce)\n", time.Since(sent).Round(time.Millisecond))
			return nil
		case e := <-pc.Errors():
			return e.Err
		case <-time.After(recvWait):
			return errors.New("the live record did not arrive")
		}
	})

	step("ConsumePartition past the end fails with OFFSET_OUT_OF_RANGE", func() error {
		_, err := consumer.ConsumePartition(events, 0, 100000)
		if err != sarama.ErrOffsetOutOfRange {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})

	step("GetOffset: oldest, newest and by timestamp (ListOffsets v1)", func() error {
		wrong := []string{}
		for _, topic := range []string{events, compressed} {
			for p := int32(0); p < 3; p++ {
				oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
				if err != nil {
					return err
				}
				newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
				if err != nil {
					return err
				}
				if oldest != 0 || newest != next(topic, p) {
					return fmt.Errorf("%s/%d: oldest %d newest %d, want 0 %d", topic, p, oldest, newest, next(topic, p))
				}
				for _, d := range []time.Duration{-5 * time.Second, 0, 15 * time.Second, 15500 * time.Millisecond,
					105 * time.Second, 210 * time.Second, 302 * time.Second, 10000 * time.Hour} {
					ts := t0.Add(d)
					got, err := client.GetOffset(topic, p, ts.UnixNano()/int64(time.Millisecond))
					if err != nil {
						return err
					}
					exact := expectedAt(topic, p, ts)
					// The first record at or after the timestamp, also inside compressed batches.
					if got != exact {
						wrong = append(wrong, fmt.Sprintf("%s/%d at T0%s: offset %d, want %d", topic, p, delta(d), got, exact))
					}
				}
			}
		}
		if len(wrong) > 0 {
			if len(wrong) > 6 {
				wrong = append(wrong[:6], fmt.Sprintf("... %d more", len(wrong)-6))
			}
			return fmt.Errorf("ListOffsets by timestamp (want: the first record with a timestamp at or after it, -1 if none):\n       %s",
				strings.Join(wrong, "\n       "))
		}
		return nil
	})

	step("CreatePartitions 3 -> 5; produce to and consume from partition 4", func() error {
		if err := admin.CreatePartitions(events, 5, nil, false); err != nil {
			return err
		}
		if err := admin.CreatePartitions(events, 4, nil, false); err == nil {
			return errors.New("shrinking to 4 partitions was accepted")
		}
		md, err := admin.DescribeTopics([]string{events})
		if err != nil {
			return err
		}
		if len(md) != 1 || len(md[0].Partitions) != 5 {
			return fmt.Errorf("DescribeTopics after CreatePartitions: %+v", md)
		}
		if err := client.RefreshMetadata(events); err != nil {
			return err
		}
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 4; i++ {
			msgs = append(msgs, msg(events, 4, fmt.Sprintf("p4-%d", i), fmt.Sprintf("new-%d", i), t0.Add(500*time.Second)))
		}
		if err := produce(cfg, msgs, ""); err != nil {
			return err
		}
		got, err := consume(consumer, events, 4, sarama.OffsetOldest, 4)
		if err != nil {
			return err
		}
		return checkRecords(events, 4, got, model[tp{events, 4}])
	})

	step("DeleteRecords moves the log start; consuming from OffsetOldest starts there", func() error {
		if err := admin.DeleteRecords(events, map[int32]int64{1: 5}); err != nil {
			return err
		}
		oldest, err := client.GetOffset(events, 1, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		if oldest != 5 {
			return fmt.Errorf("oldest offset %d after DeleteRecords(5)", oldest)
		}
		want := model[tp{events, 1}][5:]
		got, err := consume(consumer, events, 1, sarama.OffsetOldest, len(want))
		if err != nil {
			return err
		}
		if err := checkRecords(events, 1, got, want); err != nil {
			return err
		}
		if _, err := consumer.ConsumePartition(events, 1, 2); err != sarama.ErrOffsetOutOfRange {
			return fmt.Errorf("consuming below the log start: %v, want OFFSET_OUT_OF_RANGE", err)
		}
		return nil
	})

	step("DeleteTopic; the topic is gone", func() error {
		if err := admin.DeleteTopic(configured); err != nil {
			return err
		}
		topics, err := admin.ListTopics()
		if err != nil {
			return err
		}
		if _, ok := topics[configured]; ok {
			return errors.New("still listed after DeleteTopic")
		}
		err = admin.DeleteTopic(configured)
		if err != sarama.ErrUnknownTopicOrPartition {
			return fmt.Errorf("deleting it again: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		return nil
	})

	step("close", func() error {
		if err := consumer.Close(); err != nil {
			return err
		}
		if err := client.Close(); err != nil {
			return err
		}
		return admin.Close()
	})
	finish()
}
