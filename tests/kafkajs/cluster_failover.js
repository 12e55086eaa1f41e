'use strict'
// KafkaJS through a leader kill (tests/integration/test_cluster_clients.py runs it against a
// three-broker cluster and SIGKILLs the partition's leader while this produces).
//
// Env: ORDO_BOOTSTRAP (host:port,host:port,...), ORDO_TOPIC (one partition, already created),
// ORDO_COUNT (messages to send).
//
// 1. An idempotent producer (acks -1, one request in flight) sends "kjs-<n>" for n < COUNT, one
//    send() at a time, printing "ack <offset> <value>" for each acknowledged one and
//    "fail <value> <error>" for one whose send() failed after KafkaJS's retries.
// 2. Reads the partition from offset 0 to the last acknowledged offset with Fetch over KafkaJS's own
//    broker connection (its consumer always joins a group; cluster mode has none yet), finding
//    the leader again after each error, and prints "read <offset> <value>" per record.
// 3. "done"; exit 0 (the checks are the caller's).

const { Kafka, logLevel } = require('kafkajs')

const BOOTSTRAP = process.env.ORDO_BOOTSTRAP
const TOPIC = process.env.ORDO_TOPIC
const COUNT = Number(process.env.ORDO_COUNT || '600')
if (!BOOTSTRAP || !TOPIC) {
  console.error('ORDO_BOOTSTRAP and ORDO_TOPIC must be set')
  process.exit(2)
}

const kafka = new Kafka({
  clientId: 'ordo-kafkajs-cluster',
  brokers: BOOTSTRAP.split(','),
  logLevel: logLevel.NOTHING,
  connectionTimeout: 2000,
  requestTimeout: 5000,
  retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
})

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

let maxAcked = -1

async function produce() {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  for (let n = 0; n < COUNT; n++) {
    const value = `kjs-${n}`
    try {
      const [res] = await producer.send({ topic: TOPIC, acks: -1, messages: [{ value, partition: 0 }] })
      console.log(`ack ${res.baseOffset} ${value}`)
      maxAcked = Math.max(maxAcked, Number(res.baseOffset))
    } catch (e) {
      console.log(`fail ${value} ${e.name}: ${e.message}`)
    }
  }
  await producer.disconnect()
}

async function read() {
  const sym = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  if (!sym) throw new Error('KafkaJS internals changed: no createCluster symbol')
  const cluster = kafka[sym]({ allowAutoTopicCreation: false })
  await cluster.connect()
  await cluster.addTargetTopic(TOPIC)
  let next = 0
  const deadline = Date.now() + 60000
  while (next <= maxAcked) {
    if (Date.now() > deadline) throw new Error(`no progress at offset ${next} (last acknowledged ${maxAcked})`)
    try {
      const [nodeId] = Object.keys(cluster.findLeaderForPartitions(TOPIC, [0]))
      const broker = await cluster.findBroker({ nodeId })
      const resp = await broker.fetch({
        maxWaitTime: 100,
        minBytes: 1,
        maxBytes: 1 << 20,
        isolationLevel: 0,
        topics: [{ topic: TOPIC, partitions: [{ partition: 0, fetchOffset: String(next), maxBytes: 1 << 20 }] }],
      })
      const part = resp.responses[0].partitions[0]
      if (part.errorCode !== 0) throw new Error(`fetch error ${part.errorCode}`)
      const hw = Number(part.highWatermark)
      let last = next - 1
      for (const m of part.messages) {
        const o = Number(m.offset)
        if (o < next) continue
        last = o
        if (m.isControlRecord) continue // Raft's no-ops; KafkaJS's consumer drops them too
        console.log(`read ${o} ${m.value == null ? '' : m.value.toString()}`)
      }
      // Raft's own entries (control batches, which KafkaJS does not return) take offsets no
      // record has: the next fetch starts after the last record read, or one further.
      if (last >= next) next = last + 1
      else if (hw > next) next += 1
    } catch (e) {
      await sleep(200)
      await cluster.refreshMetadata()
    }
  }
  await cluster.disconnect()
}

;(async () => {
  await produce()
  await read()
  console.log('done')
})().catch(e => {
  console.error(`error: ${e.stack || e}`)
  process.exit(1)
})
