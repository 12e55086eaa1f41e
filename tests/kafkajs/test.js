'use strict'
// KafkaJS 2 against an ordo broker: admin APIs, producing (every acks setting, gzip), offset
// look-ups (earliest, latest, by timestamp) and a raw Fetch through KafkaJS's own broker
// connection, and KafkaJS's consumer: a group of two that shares a topic, commits, and is
// described and read back through the admin client; and group members as child processes
// (group_member.js) that join, leave and are SIGKILLed.
//
// Env: ORDO_BOOTSTRAP (host:port, required); ORDO_EXPECT_FILE (optional): where to write the
// records this test produced, as JSON, for run_test.py to check against what kcat reads.
//
// Prints one line per step and a closing "N passed, N failed"; exits non-zero on a failure.
// A step that fails stops the run (later steps build on earlier ones).

const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Kafka, CompressionTypes, Partitioners, logLevel } = require('kafkajs')

const BOOTSTRAP = process.env.ORDO_BOOTSTRAP
if (!BOOTSTRAP) {
  console.error('ORDO_BOOTSTRAP is not set (host:port of an ordo broker)')
  process.exit(2)
}

// KafkaJS logs the errors this test provokes on purpose (TOPIC_ALREADY_EXISTS, ...): its log
// lines are kept and printed only when a step fails.
const clientLog = []
const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  clientLog.push(`  [kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}`)
}

const kafka = new Kafka({
  clientId: 'ordo-kafkajs-test',
  brokers: [BOOTSTRAP],
  logLevel: logLevel.INFO,
  logCreator,
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 3, initialRetryTime: 100 },
})

// ---- the model: every record this test produced, per topic and partition, in offset order ----

const model = new Map() // topic -> Map(partition -> [{offset, key, value, headers, timestamp}])
function partitionModel(topic, partition) {
  if (!model.has(topic)) model.set(topic, new Map())
  const t = model.get(topic)
  if (!t.has(partition)) t.set(partition, [])
  return t.get(partition)
}
// compressedBatch: an id shared by the records that went in one compressed batch.
function recordModel(topic, partition, msg, compressedBatch = null) {
  const list = partitionModel(topic, partition)
  list.push({
    offset: list.length,
    compressedBatch,
    key: msg.key == null ? null : String(msg.key),
    value: String(msg.value),
    headers: Object.fromEntries(Object.entries(msg.headers || {}).map(([k, v]) => [k, String(v)])),
    timestamp: String(msg.timestamp),
  })
}
function nextOffset(topic, partition) {
  return partitionModel(topic, partition).length
}

// ---- a tiny sequential runner ----

let passed = 0
let failed = 0
async function step(name, fn) {
  const t0 = Date.now()
  try {
    await fn()
    passed++
    console.log(`ok   ${name} (${Date.now() - t0} ms)`)
  } catch (e) {
    failed++
    console.log(`FAIL ${name} (${Date.now() - t0} ms)`)
    console.log(e && e.stack ? e.stack : e)
    if (e && e.errors) console.log('  inner errors:', e.errors)
    console.log('KafkaJS log so far:\n' + clientLog.join('\n'))
    throw e
  }
}

async function eventually(what, fn, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await fn()
    } catch (e) {
      if (Date.now() > deadline) {
        e.message = `${what}: still failing after ${timeoutMs} ms: ${e.message}`
        throw e
      }
      await new Promise(r => setTimeout(r, 100))
    }
  }
}

// Checks a producer response: one entry per partition written, no error, and each base offset
// where the model says the partition's next record goes. Then adds the records to the model.
function checkSendResult(topic, result, byPartition, compressedBatch = null) {
  const got = result
    .filter(r => r.topicName === topic)
    .map(r => [r.partition, r])
    .sort((a, b) => a[0] - b[0])
  assert.deepEqual(
    got.map(([p]) => p),
    [...byPartition.keys()].sort((a, b) => a - b),
    `${topic}: partitions in the produce response`
  )
  for (const [p, r] of got) {
    assert.equal(r.errorCode, 0, `${topic}/${p}: error code`)
    assert.equal(String(r.baseOffset), String(nextOffset(topic, p)), `${topic}/${p}: baseOffset`)
    for (const m of byPartition.get(p)) {
      recordModel(topic, p, m, compressedBatch && `${compressedBatch}/${p}`)
    }
  }
}

function groupByPartition(messages, partitionOf) {
  const m = new Map()
  for (const msg of messages) {
    const p = partitionOf(msg)
    if (!m.has(p)) m.set(p, [])
    m.get(p).push(msg)
  }
  return m
}

const T0 = Math.floor(Date.now() / 1000) * 1000 - 3600 * 1000 // an hour ago, whole seconds
const MAIN = 'kjs-main'
const OTHER = 'kjs-other'
const GROW = 'kjs-grow'
const CONFIGURED = 'kjs-configured'
const LOGAPPEND = 'kjs-logappend'
const DOOMED = 'kjs-doomed'
const VALIDATE_ONLY = 'kjs-validate-only'

async function main() {
  const admin = kafka.admin()
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: false,
  })
  let mainMeta

  await step('admin connects; describeCluster names the bootstrap broker', async () => {
    await admin.connect()
    const c = await admin.describeCluster()
    assert.equal(c.brokers.length, 1)
    const [host, port] = BOOTSTRAP.split(':')
    assert.equal(c.brokers[0].host, host)
    assert.equal(c.brokers[0].port, Number(port))
    assert.equal(c.controller, c.brokers[0].nodeId)
    assert.ok(c.clusterId, 'cluster id')
  })

  await step('createTopics: five topics, one with configs; a second create returns false', async () => {
    const created = await admin.createTopics({
      topics: [
        { topic: MAIN, numPartitions: 3, replicationFactor: 1 },
        { topic: OTHER, numPartitions: 1 },
        { topic: GROW, numPartitions: 1 },
        {
          topic: CONFIGURED,
          numPartitions: 2,
          configEntries: [
            { name: 'retention.ms', value: '3600000' },
            { name: 'cleanup.policy', value: 'delete' },
          ],
        },
        {
          topic: LOGAPPEND,
          numPartitions: 1,
          configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }],
        },
        { topic: DOOMED, numPartitions: 2 },
      ],
    })
    assert.equal(created, true)
    const again = await admin.createTopics({ topics: [{ topic: MAIN, numPartitions: 3 }] })
    assert.equal(again, false, 'creating an existing topic reports false (TOPIC_ALREADY_EXISTS)')
  })

  await step('createTopics validateOnly creates nothing; listTopics', async () => {
    await admin.createTopics({
      validateOnly: true,
      waitForLeaders: false,
      topics: [{ topic: VALIDATE_ONLY, numPartitions: 2 }],
    })
    const topics = await admin.listTopics()
    for (const t of [MAIN, OTHER, GROW, CONFIGURED, LOGAPPEND, DOOMED]) {
      assert.ok(topics.includes(t), `listTopics has ${t}: ${topics}`)
    }
    assert.ok(!topics.includes(VALIDATE_ONLY), 'validateOnly created the topic')
  })

  await step('createTopics with an invalid partition count fails', async () => {
    await assert.rejects(
      admin.createTopics({ topics: [{ topic: 'kjs-bad', numPartitions: -5 }], waitForLeaders: false }),
      e => {
        const types = (e.errors || [e]).map(x => x.type)
        assert.ok(types.includes('INVALID_PARTITIONS'), `error types ${types}`)
        return true
      }
    )
  })

  await step('fetchTopicMetadata: partitions, leader, replicas, isr', async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [MAIN, CONFIGURED] })
    const byName = Object.fromEntries(topics.map(t => [t.name, t]))
    mainMeta = byName[MAIN]
    assert.equal(mainMeta.partitions.length, 3)
    assert.equal(byName[CONFIGURED].partitions.length, 2)
    const c = await admin.describeCluster()
    for (const p of mainMeta.partitions) {
      assert.equal(p.partitionErrorCode, 0)
      assert.equal(p.leader, c.brokers[0].nodeId)
      assert.deepEqual(p.replicas, [p.leader])
      assert.deepEqual(p.isr, [p.leader])
    }
    assert.deepEqual(mainMeta.partitions.map(p => p.partitionId).sort(), [0, 1, 2])
  })

  await step('describeConfigs: defaults and the configs set at creation', async () => {
    const r = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2 /* TOPIC */, name: CONFIGURED }],
    })
    assert.equal(r.resources.length, 1)
    const res = r.resources[0]
    assert.equal(res.errorCode, 0)
    const entries = Object.fromEntries(res.configEntries.map(e => [e.configName, e]))
    assert.equal(entries['retention.ms'].configValue, '3600000')
    assert.equal(entries['retention.ms'].isDefault, false)
    assert.equal(entries['cleanup.policy'].configValue, 'delete')
    assert.ok(entries['segment.bytes'], 'segment.bytes is described')
    assert.equal(entries['segment.bytes'].isDefault, true)
    // Only some names asked for.
    const one = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2, name: CONFIGURED, configNames: ['retention.ms'] }],
    })
    assert.deepEqual(
      one.resources[0].configEntries.map(e => e.configName),
      ['retention.ms']
    )
  })

  await step('alterConfigs replaces the topic configs; describeConfigs shows it', async () => {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: 2,
          name: CONFIGURED,
          configEntries: [{ name: 'retention.ms', value: '7200000' }],
        },
      ],
    })
    const r = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2, name: CONFIGURED, configNames: ['retention.ms', 'cleanup.policy'] }],
    })
    const entries = Object.fromEntries(r.resources[0].configEntries.map(e => [e.configName, e]))
    assert.equal(entries['retention.ms'].configValue, '7200000')
    assert.equal(entries['retention.ms'].isDefault, false)
    assert.equal(entries['cleanup.policy'].isDefault, true, 'AlterConfigs drops unnamed configs')
  })

  await step('alterConfigs with an unknown config or a bad value fails', async () => {
    await assert.rejects(
      admin.alterConfigs({
        resources: [{ type: 2, name: CONFIGURED, configEntries: [{ name: 'retention.ms', value: 'soon' }] }],
      })
    )
    await assert.rejects(
      admin.alterConfigs({
        resources: [{ type: 2, name: CONFIGURED, configEntries: [{ name: 'no.such.config', value: '1' }] }],
      })
    )
    const r = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2, name: CONFIGURED, configNames: ['retention.ms'] }],
    })
    assert.equal(r.resources[0].configEntries[0].configValue, '7200000', 'unchanged by failed alters')
  })

  await step('producer connects', async () => {
    await producer.connect()
  })

  await step('send acks=-1: 30 records, explicit partitions, keys, headers, timestamps', async () => {
    const messages = []
    for (let i = 0; i < 30; i++) {
      messages.push({
        partition: i % 3,
        key: `key-${i}`,
        value: `value-${i}`,
        headers: { idx: String(i), source: 'kafkajs' },
        timestamp: String(T0 + i * 1000),
      })
    }
    const result = await producer.send({ topic: MAIN, acks: -1, messages })
    checkSendResult(MAIN, result, groupByPartition(messages, m => m.partition))
  })

  await step('send acks=1: keyed records, the default partitioner picks partitions', async () => {
    const partitioner = Partitioners.DefaultPartitioner()
    const partitionMetadata = mainMeta.partitions
    const messages = []
    for (let i = 0; i < 12; i++) {
      messages.push({
        key: `user-${i % 4}`,
        value: `keyed-${i}`,
        headers: { kind: 'keyed', 'utf8-ключ': 'значение' },
        timestamp: String(T0 + 100000 + i * 1000),
      })
    }
    const result = await producer.send({ topic: MAIN, acks: 1, messages })
    const byPartition = groupByPartition(messages, message =>
      partitioner({ topic: MAIN, partitionMetadata, message })
    )
    checkSendResult(MAIN, result, byPartition)
  })

  await step('send acks=-1 gzip: 15 records in compressed batches', async () => {
    const messages = []
    for (let i = 0; i < 15; i++) {
      messages.push({
        partition: (i * 2) % 3,
        key: `gz-${i}`,
        value: `gzip-${i}-` + 'x'.repeat(200),
        headers: { codec: 'gzip', n: String(i) },
        timestamp: String(T0 + 200000 + i * 1000),
      })
    }
    const result = await producer.send({
      topic: MAIN,
      acks: -1,
      compression: CompressionTypes.GZIP,
      messages,
    })
    checkSendResult(MAIN, result, groupByPartition(messages, m => m.partition), 'gzip')
  })

  await step('send: a null key, an empty value, a large value', async () => {
    const messages = [
      { partition: 1, key: null, value: 'no-key', timestamp: String(T0 + 300000) },
      { partition: 1, key: 'empty', value: '', timestamp: String(T0 + 300001) },
      { partition: 1, key: 'big', value: 'B'.repeat(100000), timestamp: String(T0 + 300002) },
    ]
    const result = await producer.send({ topic: MAIN, acks: -1, messages })
    checkSendResult(MAIN, result, groupByPartition(messages, m => m.partition))
  })

  await step('send acks=0: no response; the records arrive', async () => {
    const messages = []
    for (let i = 0; i < 3; i++) {
      messages.push({
        partition: 0,
        key: `fire-${i}`,
        value: `and-forget-${i}`,
        headers: { acks: '0' },
        timestamp: String(T0 + 400000 + i),
      })
    }
    await producer.send({ topic: MAIN, acks: 0, messages })
    for (const m of messages) recordModel(MAIN, 0, m)
    const want = nextOffset(MAIN, 0)
    await eventually('high watermark after acks=0', async () => {
      const offs = await admin.fetchTopicOffsets(MAIN)
      assert.equal(offs.find(o => o.partition === 0).high, String(want))
    })
  })

  await step('sendBatch: two topics in one request', async () => {
    const mk = (topic, partition, n, tsBase) =>
      Array.from({ length: n }, (_, i) => ({
        partition,
        key: `${topic}-${i}`,
        value: `batch-${i}`,
        headers: { topic },
        timestamp: String(tsBase + i),
      }))
    const mainMsgs = mk(MAIN, 2, 4, T0 + 500000)
    const otherMsgs = mk(OTHER, 0, 6, T0 + 500000)
    const result = await producer.sendBatch({
      acks: -1,
      topicMessages: [
        { topic: MAIN, messages: mainMsgs },
        { topic: OTHER, messages: otherMsgs },
      ],
    })
    checkSendResult(MAIN, result, groupByPartition(mainMsgs, m => m.partition))
    checkSendResult(OTHER, result, groupByPartition(otherMsgs, m => m.partition))
  })

  await step('producing to a topic that does not exist fails', async () => {
    await assert.rejects(
      producer.send({ topic: 'kjs-missing', acks: -1, messages: [{ value: 'x' }] })
    )
  })

  await step('LogAppendTime topic: the broker sets the timestamps', async () => {
    const before = Date.now()
    const result = await producer.send({
      topic: LOGAPPEND,
      acks: -1,
      messages: [{ key: 'a', value: '1', timestamp: '1000' }, { key: 'b', value: '2', timestamp: '2000' }],
    })
    const after = Date.now()
    assert.equal(result.length, 1)
    assert.equal(result[0].errorCode, 0)
    assert.equal(result[0].baseOffset, '0')
    const lat = Number(result[0].logAppendTime)
    assert.ok(lat >= before - 1000 && lat <= after + 1000, `logAppendTime ${lat} in [${before}, ${after}]`)
  })

  await step('fetchTopicOffsets: low 0, high = records produced, per partition', async () => {
    for (const topic of [MAIN, OTHER]) {
      const offs = await admin.fetchTopicOffsets(topic)
      const got = offs
        .map(o => ({ partition: o.partition, low: o.low, high: o.high, offset: o.offset }))
        .sort((a, b) => a.partition - b.partition)
      const want = [...model.get(topic).keys()]
        .sort((a, b) => a - b)
        .map(p => {
          const n = String(nextOffset(topic, p))
          return { partition: p, low: '0', high: n, offset: n }
        })
      assert.deepEqual(got, want, topic)
    }
    const empty = await admin.fetchTopicOffsets(CONFIGURED)
    assert.deepEqual(
      empty.map(o => [o.partition, o.low, o.high]).sort(),
      [[0, '0', '0'], [1, '0', '0']]
    )
  })

  await step('fetchTopicOffsetsByTimestamp (ListOffsets by time)', async () => {
    // Kafka answers with the first record whose timestamp is >= ts, also inside compressed
    // batches (none: KafkaJS falls back to the high watermark).
    const answers = ts =>
      [...model.get(MAIN).entries()]
        .map(([p, recs]) => {
          const r = recs.find(x => Number(x.timestamp) >= ts)
          return { partition: p, exact: String(r ? r.offset : recs.length) }
        })
        .sort((a, b) => a.partition - b.partition)
    const queries = [T0 - 5000, T0, T0 + 15000, T0 + 15500, T0 + 105000, T0 + 200000,
      T0 + 210000, T0 + 300001, T0 + 400001, T0 + 10 ** 9]
    for (const ts of queries) {
      const label = `timestamp T0${ts >= T0 ? '+' : ''}${ts - T0}`
      const got = (await admin.fetchTopicOffsetsByTimestamp(MAIN, ts))
        .map(o => ({ partition: o.partition, offset: o.offset }))
        .sort((a, b) => a.partition - b.partition)
      const want = answers(ts)
      assert.deepEqual(got.map(o => o.partition), want.map(w => w.partition), label)
      got.forEach((o, i) => {
        // The first record at or after the timestamp, also inside compressed batches.
        assert.equal(o.offset, want[i].exact, `${label}, partition ${o.partition}`)
      })
    }
  })

  await step('Fetch (KafkaJS broker connection): every record of every partition', async () => {
    // KafkaJS exposes Fetch only through its group consumer; its per-broker connection
    // (kafkajs/src) sends the same Fetch request the consumer would.
    const sym = Object.getOwnPropertySymbols(kafka).find(
      s => s.description === 'private:Kafka:createCluster'
    )
    assert.ok(sym, 'KafkaJS internals changed: no createCluster symbol')
    const cluster = kafka[sym]({ allowAutoTopicCreation: false })
    await cluster.connect()
    try {
      for (const topic of [MAIN, OTHER]) {
        await cluster.addTargetTopic(topic)
        for (const [p, want] of model.get(topic)) {
          const [nodeId] = Object.keys(cluster.findLeaderForPartitions(topic, [p]))
          const broker = await cluster.findBroker({ nodeId })
          const got = []
          let next = 0
          let rounds = 0
          while (next < want.length) {
            assert.ok(rounds++ < 100, `${topic}/${p}: no progress at offset ${next}`)
            const resp = await broker.fetch({
              maxWaitTime: 100,
              minBytes: 1,
              maxBytes: 1 << 20,
              isolationLevel: 0,
              topics: [{ topic, partitions: [{ partition: p, fetchOffset: String(next), maxBytes: 64 * 1024 }] }],
            })
            const part = resp.responses[0].partitions[0]
            assert.equal(part.errorCode, 0, `${topic}/${p}: fetch error`)
            assert.equal(part.highWatermark, String(want.length), `${topic}/${p}: high watermark`)
            for (const m of part.messages) {
              if (Number(m.offset) < next) continue // a batch can start before the offset asked for
              assert.equal(Number(m.offset), next, `${topic}/${p}: offsets are dense`)
              got.push({
                offset: Number(m.offset),
                key: m.key == null ? null : m.key.toString(),
                value: m.value == null ? null : m.value.toString(),
                headers: Object.fromEntries(
                  Object.entries(m.headers || {}).map(([k, v]) => [k, v.toString()])
                ),
                timestamp: m.timestamp,
              })
              next++
            }
          }
          const wantRecords = want.map(({ compressedBatch, ...r }) => r)
          assert.deepEqual(got, wantRecords, `${topic}/${p}: fetched records`)
        }
      }
      // From an offset in the middle of a (gzip) batch, and at the end (empty, no error).
      const p0 = model.get(MAIN).get(0)
      const mid = p0.findIndex(r => r.headers.codec === 'gzip') + 2
      const [nodeId] = Object.keys(cluster.findLeaderForPartitions(MAIN, [0]))
      const broker = await cluster.findBroker({ nodeId })
      const resp = await broker.fetch({
        maxWaitTime: 100,
        isolationLevel: 0,
        topics: [{ topic: MAIN, partitions: [{ partition: 0, fetchOffset: String(mid), maxBytes: 1 << 20 }] }],
      })
      const msgs = resp.responses[0].partitions[0].messages.filter(m => Number(m.offset) >= mid)
      assert.equal(msgs[0].key.toString(), p0[mid].key)
      const atEnd = await broker.fetch({
        maxWaitTime: 50,
        isolationLevel: 0,
        topics: [{ topic: MAIN, partitions: [{ partition: 0, fetchOffset: String(p0.length), maxBytes: 1 << 20 }] }],
      })
      assert.equal(atEnd.responses[0].partitions[0].errorCode, 0)
      assert.equal(atEnd.responses[0].partitions[0].messages.length, 0)
    } finally {
      await cluster.disconnect()
    }
  })

  await step('consumer group: two KafkaJS consumers share a topic, each record once', async () => {
    const groupId = 'kjs-group'
    const want = new Map() // "partition:offset" -> value
    for (const [p, recs] of model.get(MAIN)) for (const r of recs) want.set(`${p}:${r.offset}`, r.value)
    const seen = new Map() // "partition:offset" -> times consumed
    const owners = [new Set(), new Set()]
    const consumers = [0, 1].map(() =>
      kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 300, maxWaitTimeInMs: 100 })
    )
    const until = async (what, cond, ms = 30000) => {
      const end = Date.now() + ms
      while (!(await cond())) {
        assert.ok(Date.now() < end, `timed out waiting for ${what}`)
        await new Promise(r => setTimeout(r, 100))
      }
    }
    try {
      // Both start within the broker's initial rebalance delay: one generation with both.
      await Promise.all(
        consumers.map(async (c, i) => {
          await c.connect()
          await c.subscribe({ topics: [MAIN], fromBeginning: true })
          await c.run({
            eachMessage: async ({ partition, message }) => {
              owners[i].add(partition)
              const k = `${partition}:${message.offset}`
              seen.set(k, (seen.get(k) || 0) + 1)
              assert.equal(message.value.toString(), want.get(k), `record ${k}`)
            },
          })
        })
      )
      await until('every record', () => seen.size === want.size)
      for (const [k, n] of seen) assert.equal(n, 1, `record ${k} consumed ${n} times`)
      assert.ok(owners[0].size > 0 && owners[1].size > 0, 'both members got partitions')
      assert.deepEqual([...owners[0]].filter(p => owners[1].has(p)), [], 'no partition shared')

      const described = await admin.describeGroups([groupId])
      assert.equal(described.groups[0].state, 'Stable')
      assert.equal(described.groups[0].members.length, 2)
      // KafkaJS commits after each batch: the committed offsets reach the ends.
      const ends = [...model.get(MAIN)].map(([p, recs]) => [p, String(recs.length)]).sort()
      await until('the committed offsets', async () => {
        const [t] = await admin.fetchOffsets({ groupId, topics: [MAIN] })
        const got = t.partitions.map(o => [o.partition, o.offset]).sort()
        return JSON.stringify(got) === JSON.stringify(ends)
      })
    } finally {
      await Promise.all(consumers.map(c => c.disconnect()))
    }
    const listed = await admin.listGroups()
    assert.ok(listed.groups.some(g => g.groupId === groupId), 'listGroups shows the group')
    // Empty after both left: it can be deleted, offsets and all.
    await admin.deleteGroups([groupId])
    const [after] = await admin.fetchOffsets({ groupId, topics: [MAIN] })
    assert.ok(after.partitions.every(o => o.offset === '-1'), 'offsets deleted with the group')
  })

  await step('consumer group: members join, leave and are SIGKILLed; each message committed once', async () => {
    const { fork } = require('node:child_process')
    const path = require('node:path')
    const topic = 'kjs-dyn'
    const groupId = 'kjs-dyn-group'
    const parts = 6
    const total = 900
    await admin.createTopics({ topics: [{ topic, numPartitions: parts }], waitForLeaders: true })
    const p = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await p.connect()
    const produce = async (from, to) => {
      const messages = []
      for (let i = from; i < to; i++) messages.push({ partition: i % parts, value: String(i) })
      await p.send({ topic, acks: -1, messages })
    }
    const members = []
    const spawn = () => {
      const child = fork(path.join(__dirname, 'group_member.js'), [], {
        env: { ...process.env, MEMBER_GROUP: groupId, MEMBER_TOPIC: topic },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      const m = { child, assigned: null, processing: [], consumed: [] }
      child.on('message', msg => {
        if (msg.kind === 'assigned') m.assigned = msg.partitions
        else if (msg.kind === 'processing') m.processing.push(msg.value)
        else if (msg.kind === 'consumed') m.consumed.push(msg.value)
      })
      members.push(m)
      return m
    }
    const until = async (what, cond, ms = 60000) => {
      const end = Date.now() + ms
      while (!cond()) {
        assert.ok(Date.now() < end, `timed out waiting for ${what}`)
        await new Promise(r => setTimeout(r, 100))
      }
    }
    const covers = ms => {
      const all = ms.flatMap(m => m.assigned || []).sort((a, b) => a - b)
      return ms.every(m => m.assigned && m.assigned.length > 0) &&
        JSON.stringify(all) === JSON.stringify([...Array(parts).keys()])
    }
    // Settled: committed and reported, or in flight at the killed member when SIGKILL came.
    let killed = null
    const settled = () => {
      const s = new Set(members.flatMap(m => m.consumed))
      if (killed) killed.processing.forEach(v => s.add(v))
      return s
    }
    try {
      await produce(0, total / 3)
      const a = spawn()
      const b = spawn()
      await until('two members to split the partitions', () => covers([a, b]))
      const c = spawn()
      await until('three members to split the partitions', () => covers([a, b, c]))
      await produce(total / 3, (2 * total) / 3)
      c.child.send({ leave: true }) // LeaveGroup
      await until('the two remaining members to take over', () => covers([a, b]) && c.child.exitCode !== null)
      b.child.kill('SIGKILL') // no LeaveGroup: the session timeout finds it
      killed = b
      await produce((2 * total) / 3, total)
      await until('the survivor to own every partition', () => covers([a]))
      await until('every message', () => settled().size === total)
      const committed = members.flatMap(m => m.consumed)
      assert.equal(committed.length, new Set(committed).size, 'a message was committed twice')
      assert.deepEqual([...settled()].map(Number).sort((x, y) => x - y), [...Array(total).keys()])
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
      assert.deepEqual(
        t.partitions.map(o => [o.partition, o.offset]).sort((x, y) => x[0] - y[0]),
        [...Array(parts).keys()].map(i => [i, String(total / parts)]),
        'the committed offsets are the ends'
      )
    } finally {
      await p.disconnect()
      for (const m of members) {
        if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL')
      }
    }
  })

  await step('createPartitions: 1 -> 4; metadata and producing to the new partition', async () => {
    await admin.createPartitions({ topicPartitions: [{ topic: GROW, count: 4 }] })
    const { topics } = await admin.fetchTopicMetadata({ topics: [GROW] })
    assert.equal(topics[0].partitions.length, 4)
    await assert.rejects(
      admin.createPartitions({ topicPartitions: [{ topic: GROW, count: 2 }] }),
      'shrinking must fail'
    )
    // The producer's metadata is refreshed by a failed send or its max age; ask it directly.
    const p = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await p.connect()
    try {
      const messages = Array.from({ length: 5 }, (_, i) => ({
        partition: 3,
        key: `g-${i}`,
        value: `grown-${i}`,
        timestamp: String(T0 + 600000 + i),
      }))
      const result = await p.send({ topic: GROW, acks: -1, messages })
      checkSendResult(GROW, result, groupByPartition(messages, m => m.partition))
    } finally {
      await p.disconnect()
    }
  })

  await step('deleteTopicRecords moves the low watermark', async () => {
    // (On kjs-other: KafkaJS's admin looks the leader up in its cached metadata, which does not
    // have kjs-grow's new partitions yet.)
    await admin.deleteTopicRecords({ topic: OTHER, partitions: [{ partition: 0, offset: '2' }] })
    const offs = await admin.fetchTopicOffsets(OTHER)
    assert.deepEqual(offs.map(o => [o.partition, o.low, o.high]), [[0, '2', '6']])
    // kcat (run_test.py) then reads only offsets 2..5.
    partitionModel(OTHER, 0).splice(0, 2)
  })

  await step('deleteTopics: gone from listTopics and metadata', async () => {
    await admin.deleteTopics({ topics: [DOOMED] })
    const topics = await admin.listTopics()
    assert.ok(!topics.includes(DOOMED), `still listed: ${topics}`)
    await assert.rejects(admin.fetchTopicOffsets(DOOMED))
    // A topic of the same name can be created again, empty.
    assert.equal(await admin.createTopics({ topics: [{ topic: DOOMED, numPartitions: 1 }] }), true)
    const offs = await admin.fetchTopicOffsets(DOOMED)
    assert.deepEqual(offs.map(o => [o.partition, o.low, o.high]), [[0, '0', '0']])
  })

  await step('disconnect', async () => {
    await producer.disconnect()
    await admin.disconnect()
  })

  if (process.env.ORDO_EXPECT_FILE) {
    const out = {}
    for (const [topic, parts] of model) {
      out[topic] = {}
      for (const [p, recs] of parts) out[topic][p] = recs
    }
    fs.writeFileSync(process.env.ORDO_EXPECT_FILE, JSON.stringify(out, null, 1))
  }
}

main()
  .catch(() => {})
  .finally(() => {
    console.log(`kafkajs: ${passed} passed, ${failed} failed`)
    process.exit(failed === 0 && passed > 0 ? 0 : 1)
  })
