// Sarama through a leader kill: tests/integration/test_cluster_clients.py builds this (GOPATH
// mode, as ../run_test.py does) and runs it against a three-broker cluster, SIGKILLing the
// partition's leader while it produces.
//
//	ORDO_BOOTSTRAP=host:port,host:port,... ORDO_TOPIC=t ORDO_COUNT=600 ./sarama_cluster
//
//  1. An idempotent SyncProducer (WaitForAll, one request in flight, retries) sends
//     "sarama-<n>" for n < COUNT one at a time, printing "ack <offset> <value>" for each
//     acknowledged one and "fail <value> <error>" for one SendMessage gave up on.
//  2. A partition consumer (no consumer group: cluster mode has none yet) reads the partition
//     from the oldest offset up to the last acknowledged offset, printing "read <offset> <value>".
//  3. "done"; exit 0 (the checks are the caller's), 1 when the read does not finish.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

func main() {
	boot := strings.Split(os.Getenv("ORDO_BOOTSTRAP"), ",")
	topic := os.Getenv("ORDO_TOPIC")
	count, err := strconv.Atoi(os.Getenv("ORDO_COUNT"))
	if len(boot) == 0 || boot[0] == "" || topic == "" || err != nil {
		fmt.Fprintln(os.Stderr, "ORDO_BOOTSTRAP, ORDO_TOPIC and ORDO_COUNT must be set")
		os.Exit(2)
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.ClientID = "ordo-sarama-cluster"
	cfg.Net.MaxOpenRequests = 1
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Net.ReadTimeout = 5 * time.Second
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 50
	cfg.Producer.Retry.Backoff = 200 * time.Millisecond
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Metadata.Retry.Max = 50
	cfg.Metadata.Retry.Backoff = 200 * time.Millisecond
	cfg.Consumer.Retry.Backoff = 200 * time.Millisecond

	producer, err := sarama.NewSyncProducer(boot, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewSyncProducer: %v\n", err)
		os.Exit(1)
	}
	var maxAcked int64 = -1
	for n := 0; n < count; n++ {
		v := fmt.Sprintf("sarama-%d", n)
		_, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0,
			Value: sarama.StringEncoder(v)})
		if err != nil {
			fmt.Printf("fail %s %v\n", v, err)
		} else {
			fmt.Printf("ack %d %s\n", off, v)
			if off > maxAcked {
				maxAcked = off
			}
		}
	}
	producer.Close()

	client, err := sarama.NewClient(boot, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewClient: %v\n", err)
		os.Exit(1)
	}
	defer client.Close()
	deadline := time.Now().Add(60 * time.Second)
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "consumer: %v\n", err)
		os.Exit(1)
	}
	var pc sarama.PartitionConsumer
	for pc == nil && time.Now().Before(deadline) {
		if pc, err = consumer.ConsumePartition(topic, 0, sarama.OffsetOldest); err != nil {
			pc = nil
			time.Sleep(200 * time.Millisecond)
			client.RefreshMetadata(topic)
		}
	}
	if pc == nil {
		fmt.Fprintf(os.Stderr, "ConsumePartition: %v\n", err)
		os.Exit(1)
	}
	// Up to the last acknowledged offset (every acknowledged record is committed, so readable).
	var last int64 = -1
	for last < maxAcked {
		select {
		case m := <-pc.Messages():
			fmt.Printf("read %d %s\n", m.Offset, string(m.Value))
			last = m.Offset
		case e := <-pc.Errors():
			fmt.Fprintf(os.Stderr, "consume error: %v\n", e)
		case <-time.After(time.Second):
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "no progress after offset %d (last acknowledged %d)\n", last, maxAcked)
				os.Exit(1)
			}
		}
	}
	pc.Close()
	fmt.Println("done")
}
