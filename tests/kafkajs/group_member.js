'use strict'
// One KafkaJS consumer-group member as a child process (test.js forks it), so that the test
// can SIGKILL it. Env: ORDO_BOOTSTRAP, MEMBER_GROUP, MEMBER_TOPIC.
//
// Reports to the parent over IPC: {kind: 'assigned', partitions} after every join,
// {kind: 'processing', value} before committing a message and {kind: 'consumed', value} after
// the commit returned (a SIGKILL between the two leaves a message whose commit may or may not
// have landed). A message {leave: true} from the parent makes it disconnect (LeaveGroup) and
// exit.

const { Kafka, logLevel } = require('kafkajs')

const kafka = new Kafka({
  clientId: 'ordo-kafkajs-member',
  brokers: [process.env.ORDO_BOOTSTRAP],
  logLevel: logLevel.NOTHING,
  retry: { retries: 10, initialRetryTime: 100 },
})
const topic = process.env.MEMBER_TOPIC
const consumer = kafka.consumer({
  groupId: process.env.MEMBER_GROUP,
  sessionTimeout: 6000,
  heartbeatInterval: 300,
  maxWaitTimeInMs: 100,
})

consumer.on(consumer.events.GROUP_JOIN, e => {
  const partitions = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
  process.send({ kind: 'assigned', partitions })
})

async function main() {
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const value = message.value.toString()
      process.send({ kind: 'processing', value })
      // A failed commit throws: KafkaJS then delivers the message again (or its new owner
      // starts from the last commit).
      await consumer.commitOffsets([
        { topic, partition, offset: String(Number(message.offset) + 1) },
      ])
      process.send({ kind: 'consumed', value })
    },
  })
}

process.on('message', async m => {
  if (m && m.leave) {
    await consumer.disconnect()
    process.exit(0)
  }
})

main().catch(e => {
  console.error('group member failed:', e)
  process.exit(1)
})
