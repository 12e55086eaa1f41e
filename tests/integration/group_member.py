"""One consumer-group member as its own process, so that tests can SIGKILL it.

    group_member.py BOOTSTRAP GROUP TOPIC STRATEGY [INSTANCE_ID]

Consumes, commits each message synchronously, and only then prints "consumed <value>" on
stdout (flushed): a printed message is processed and committed. A failed commit is reported
on stderr and the message is read again. Prints "assigned p,p,..." after
every assignment change. Runs until killed or until stdin closes (then closes the consumer).
"""

import select
import sys

from confluent_kafka import Consumer, KafkaException, TopicPartition


def main():
    bootstrap, group, topic, strategy = sys.argv[1:5]
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
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break
    c.close()


if __name__ == "__main__":
    main()
