"""Idempotent producers (librdkafka, enable.idempotence) through a proxy that loses responses
and delays others (fault_proxy.py), also across broker restarts (SIGTERM and SIGKILL): every
message is stored exactly once and in order."""

import unittest

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ordo_harness
from fault_proxy import FaultProxy

PARTITIONS = 3
MESSAGES = 6000


class IdempotenceTest(unittest.TestCase):
    def consume_all(self, bootstrap, topic):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        per_partition = {p: [] for p in range(PARTITIONS)}
        idle = 0
        while idle < 20:
            m = c.poll(0.2)
            if m is None:
                idle += 1
                continue
            self.assertIsNone(m.error())
            idle = 0
            per_partition[m.partition()].append(int(m.value()))
        c.close()
        return per_partition

    def run_through_proxy(self, restart):
        with FaultProxy(lambda: broker.port, drop=0.01, delay=0.05) as proxy, \
                ordo_harness.Broker(["--set", f"advertised.listen=127.0.0.1:{proxy.port}"]) as broker:
            bootstrap = f"127.0.0.1:{proxy.port}"
            topic = "idem"
            proxy.enabled = False
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
            proxy.enabled = True
            errors = []
            p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                          "linger.ms": 2, "batch.num.messages": 50,
                          "message.timeout.ms": 120000, "error_cb": errors.append})
            delivered = []

            def on_delivery(err, msg):
                if err is None:
                    delivered.append(int(msg.value()))
                else:
                    errors.append(err)

            for i in range(MESSAGES):
                p.produce(topic, value=str(i), partition=i % PARTITIONS, on_delivery=on_delivery)
                if i == MESSAGES // 2 and restart:
                    restart(broker)  # with batches in flight
                p.poll(0)
            self.assertEqual(p.flush(120), 0)
            fatal = [e for e in errors if e.fatal()] if errors else []
            self.assertEqual(fatal, [])
            self.assertEqual(len(delivered), MESSAGES)
            proxy.enabled = False
            stored = self.consume_all(f"127.0.0.1:{broker.port}", topic)
            for part, values in stored.items():
                want = list(range(part, MESSAGES, PARTITIONS))
                self.assertEqual(len(values), len(set(values)), f"duplicates in partition {part}")
                self.assertEqual(values, want, f"partition {part}: gaps or reordering")
            self.assertGreater(proxy.dropped, 0, "the proxy never lost a response")

    def test_lost_responses_do_not_duplicate(self):
        self.run_through_proxy(None)

    def test_across_a_sigterm_restart(self):
        self.run_through_proxy(lambda b: b.restart())

    def test_across_a_sigkill(self):
        def kill_and_start(b):
            b.kill()
            b.start()
        self.run_through_proxy(kill_and_start)


if __name__ == "__main__":
    unittest.main()
