"""One consumer-group member as its own process, so that tests can SIGKILL it.

    group_member.py BOOTSTRAP GROUP TOPIC STRATEGY [INSTANCE_ID]

STRATEGY is a librdkafka partition.assignment.strategy (range, cooperative-sticky, ...), or
"kafka-python" for a kafka-python 2.0 member (its default range/roundrobin, eager).

Consumes: prints "processing <value>", commits the message synchronously, and only then prints
"consumed <value>" (stdout, flushed): a "consumed" message is processed and committed; a SIGKILL
between the two lines leaves a message whose commit may or may not have landed. A failed
commit is reported on stderr and the message is read again. Prints "assigned p,p,..." after
every assignment change. Runs until killed or until stdin closes (then closes the consumer).
"""

import select
import sys

from confluent_kafka import Consumer, KafkaException, TopicPartition


def stdin_closed():
    return select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline()


def kafka_python_member(bootstrap, group, topic):
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition as KTP
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=3000,
                      heartbeat_interval_ms=300, api_version_auto_timeout_ms=10000)

    class Show(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            print("assigned ", flush=True)

        def on_partitions_assigned(self, assigned):
            print("assigned " + ",".join(str(p) for p in sorted(tp.partition for tp in assigned)),
                  flush=True)

    c.subscribe([topic], listener=Show())
    while not stdin_closed():
        for tp, msgs in c.poll(timeout_ms=200).items():
            for m in msgs:
                print("processing " + m.value.decode(), flush=True)
                try:
                    c.commit({KTP(tp.topic, tp.partition): OffsetAndMetadata(m.offset + 1, "")})
                except KafkaError as e:
                    print(f"commit of {tp.partition}@{m.offset} failed: {e}", file=sys.stderr,
                          flush=True)
                    try:
                        c.seek(KTP(tp.topic, tp.partition), m.offset)
                    except (KafkaError, AssertionError):
                        pass
                    break
                print("consumed " + m.value.decode(), flush=True)
    c.close()


def main():
    bootstrap, group, topic, strategy = sys.argv[1:5]
    if strategy == "kafka-python":
        return kafka_python_member(bootstrap, group, topic)
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 3000,
        "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": strategy,
    }
    if len(sys.argv) > 5:
        conf["group.instance.id"] = sys.argv[5]
    c = Consumer(conf)

    # Eager protocols hand over the whole assignment in each callback; cooperative ones only
    # what is added or taken away.
    incremental = strategy == "cooperative-sticky"
    owned = set()

    def show():
        print("assigned " + ",".join(str(p) for p in sorted(owned)), flush=True)

    def on_assign(_consumer, partitions):
        if not incremental:
            owned.clear()
        owned.update(p.partition for p in partitions)
        show()

    def on_revoke(_consumer, partitions):
        if incremental:
            owned.difference_update(p.partition for p in partitions)
        else:
            owned.clear()
        show()

    def on_lost(_consumer, _partitions):
        owned.clear()
        show()

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while True:
        m = c.poll(0.2)
        if m is not None and not m.error():
            print("processing " + m.value().decode(), flush=True)
            try:
                c.commit(m, asynchronous=False)
            except KafkaException as e:
                # Not committed (e.g. REBALANCE_IN_PROGRESS): not processed either. Read it
                # again; if the partition moved, its new owner starts from the last commit.
                print(f"commit of {m.partition()}@{m.offset()} failed: {e}", file=sys.stderr,
                      flush=True)
                try:
                    c.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
                except KafkaException:
                    pass
                continue
            print("consumed " + m.value().decode(), flush=True)
        if stdin_closed():
            break
    c.close()


if __name__ == "__main__":
    main()
