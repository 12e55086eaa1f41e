// Fetch (sessionless, long poll) and ListOffsets.

#include <atomic>

#include "base/coding.h"
#include "broker/handlers.h"
#include "protocol/messages/fetch_request.h"
#include "protocol/messages/fetch_response.h"
#include "protocol/messages/list_offsets_request.h"
#include "protocol/messages/list_offsets_response.h"

namespace ordo::broker {

namespace {

// Cluster mode: Raft's own log entries (a new leader's no-op, configuration changes) are stored
// as control batches (cluster/raft_storage.h). Kafka clients skip control batches, but not all
// of them correctly when they never use transactions (kafka-python 2.0 returns them as
// records; Sarama 1.22 then drops the records that follow), so a cluster leaves them out of
// Fetch responses: the records skip their offsets, as after compaction. Ordo writes no other
// control batches (no transactions). nullopt: the slice holds none (sent as the file range);
// otherwise the slice's other batches, read into memory (rare: one per leader change).
Result<std::optional<std::vector<uint8_t>>> without_control_batches(const storage::FileSlice& s) {
  constexpr int64_t kHeader = 23;  // base offset, length, leader epoch, magic, CRC, attributes
  constexpr uint16_t kControlBit = 0x20;
  std::vector<std::pair<int64_t, int64_t>> keep;  // [position, size) ranges
  bool dropped = false;
  int64_t pos = s.position;
  const int64_t end = s.position + s.size;
  uint8_t header[kHeader];
  for (int guard = 0; pos < end; ++guard) {
    ORDO_ASSERT(guard < (1 << 24));
    int64_t total = end - pos;  // a partial batch at the end is kept as it is
    bool control = false;
    if (end - pos >= kHeader) {
      ORDO_TRY(s.file->pread_exact(std::span<uint8_t>(header, kHeader), pos));
      int64_t length = int32_t(load_be32(header + 8));
      if (length > 0 && 12 + length <= end - pos) {
        total = 12 + length;
        control = (load_be16(header + 21) & kControlBit) != 0;
      }
    }
    if (control) {
      dropped = true;
    } else if (!keep.empty() && keep.back().first + keep.back().second == pos) {
      keep.back().second += total;
    } else {
      keep.emplace_back(pos, total);
    }
    pos += total;
  }
  if (!dropped) return std::optional<std::vector<uint8_t>>();
  std::vector<uint8_t> out;
  for (const auto& [at, size] : keep) {
    size_t from = out.size();
    out.resize(from + size_t(size));
    ORDO_TRY(s.file->pread_exact(std::span<uint8_t>(out.data() + from, size_t(size)), at));
  }
  return std::optional<std::vector<uint8_t>>(std::move(out));
}

using FetchPartitionData = protocol::FetchResponse::PartitionData;

struct FetchItem {
  size_t topic_index = 0;
  model::TopicPartition tp;
  int64_t offset = 0;
  int32_t max_bytes = 0;
  bool known = false;  // an existing partition this node leads: read
  std::optional<cluster::LeaderError> not_led;
  Result<storage::ReadResult> result = make_error(Errc::not_found, "not read");
};

// Reads every known partition at once (each on its shard) and resumes when all are back.
asio::awaitable<void> read_all(cluster::PartitionService& parts, std::vector<FetchItem>& items,
                               int8_t isolation_level) {
  (void)isolation_level;  // no transactions yet: the last stable offset is the high watermark
  co_await on_callback<int>([&](auto done) {
    auto remaining = std::make_shared<std::atomic<size_t>>(1);
    auto finish_one = [remaining, done]() mutable {
      if (remaining->fetch_sub(1) == 1) done(0);
    };
    for (auto& item : items) {
      if (!item.known) continue;
      remaining->fetch_add(1);
      storage::ReadOptions o;
      o.start = Offset(item.offset);
      o.max_bytes = item.max_bytes;
      o.min_one_batch = true;
      parts.read(item.tp, o, [&item, finish_one](Result<storage::ReadResult> r) mutable {
        item.result = std::move(r);
        finish_one();
      });
    }
    finish_one();
  });
}

// Reads one partition again with a smaller limit and no first-batch exception: the batches
// that fit in what is left of the response's max_bytes.
asio::awaitable<void> read_within(cluster::PartitionService& parts, FetchItem& item,
                                  int64_t max_bytes) {
  co_await on_callback<int>([&](auto done) {
    storage::ReadOptions o;
    o.start = Offset(item.offset);
    o.max_bytes = max_bytes;
    o.min_one_batch = false;
    parts.read(item.tp, o, [&item, done](Result<storage::ReadResult> r) mutable {
      item.result = std::move(r);
      done(0);
    });
  });
}

}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::fetch(Broker& b, Request& req,
                                                        protocol::FetchRequest& body) {
  protocol::FetchResponse resp;
  // Sessions (KIP-227) are not kept: session id 0 in the response tells the client to send
  // full requests. A request naming a session gets FETCH_SESSION_ID_NOT_FOUND.
  if (body.session_id != 0) {
    resp.error_code = code(ErrorCode::fetch_session_id_not_found);
    co_return respond(req, resp);
  }

  cluster::PartitionService& parts = partitions(b);
  auto topics = b.topics().snapshot();
  std::vector<FetchItem> items;
  for (size_t ti = 0; ti < body.topics.size(); ++ti) {
    const auto& t = body.topics[ti];
    const TopicInfo* info = b.topics().find(*topics, t.topic);
    for (const auto& p : t.partitions) {
      FetchItem item;
      item.topic_index = ti;
      item.tp = {t.topic, p.partition};
      item.offset = p.fetch_offset;
      // No partition can contribute more than the whole response may hold.
      item.max_bytes = std::clamp(p.partition_max_bytes, 0, std::max(body.max_bytes, 0));
      if (has_partition(info, p.partition)) {
        item.not_led = parts.check_leader(item.tp, p.current_leader_epoch);
        item.known = !item.not_led;
      }
      items.push_back(std::move(item));
    }
  }

  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(std::clamp(body.max_wait_ms, 0, b.config().fetch_max_wait_ms));
  const int64_t max_bytes = std::max(body.max_bytes, 0);
  auto executor = co_await asio::this_coro::executor;
  while (true) {
    // Registered before reading, so that an append landing during the read is not missed.
    auto waiter = std::make_shared<PartitionWaiters::Waiter>(executor);
    for (const auto& item : items) {
      if (item.known) waiters(b).add(item.tp, waiter);
    }
    co_await read_all(parts, items, body.isolation_level);
    int64_t total = 0;
    bool error = false;
    for (const auto& item : items) {
      if (!item.known || !item.result) {
        error = true;
      } else {
        total += item.result->slice.size;
      }
    }
    bool done = error || total >= body.min_bytes || b.stopping() ||
                std::chrono::steady_clock::now() >= deadline;
    if (!done && !waiter->notified) {
      waiter->timer.expires_at(deadline);
      asio::error_code ec;
      co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    for (const auto& item : items) {
      if (item.known) waiters(b).remove(item.tp, waiter);
    }
    if (done) break;
  }

  // The response: partitions in request order, at most max_bytes of records in all except
  // that the first partition with data always gets its first batch whole (KIP-74), so that a
  // consumer progresses. Each partition was read within min(its limit, max_bytes); one whose
  // batches do not all fit in what is left is read again within that (whole batches only).
  int64_t used = 0;
  for (const auto& t : body.topics) resp.responses.push_back({t.topic, t.topic_id, {}, {}});
  for (auto& item : items) {
    if (used > 0 && item.known && item.result && item.result->slice.size > max_bytes - used) {
      if (max_bytes - used > 0) {
        co_await read_within(parts, item, max_bytes - used);
      } else {
        item.result->slice = {};
      }
    }
    FetchPartitionData out;
    out.partition_index = item.tp.partition;
    // Never null: librdkafka cannot parse a -1 record set size, even next to an error.
    out.records = protocol::Records::owned({});
    if (item.not_led) {
      set_leader_error(out, *item.not_led);
      out.high_watermark = -1;
    } else if (!item.known) {
      out.error_code = code(ErrorCode::unknown_topic_or_partition);
      out.high_watermark = -1;
    } else if (!item.result) {
      out.error_code = code(error_code_for(item.result.error()));
      out.high_watermark = -1;
    } else {
      const storage::ReadResult& r = *item.result;
      out.high_watermark = r.high_watermark.value();
      out.last_stable_offset = r.high_watermark.value();
      out.log_start_offset = r.log_start_offset.value();
      if (body.isolation_level == 1) out.aborted_transactions.emplace();
      const storage::FileSlice& s = r.slice;
      if (s.size > 0) {
        ORDO_ASSERT(used == 0 || used + s.size <= max_bytes);
        out.records = protocol::Records::file({s.file, s.position, s.size});
        used += s.size;
        if (cluster_node(b) != nullptr) {
          auto kept = without_control_batches(s);
          if (!kept) {
            out.records = protocol::Records::owned({});
            out.error_code = code(error_code_for(kept.error()));
          } else if (*kept) {
            out.records = protocol::Records::owned(std::move(**kept));
          }
        }
      }
    }
    resp.responses[item.topic_index].partitions.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- ListOffsets ----

asio::awaitable<HandlerOutcome> Broker::Handlers::list_offsets(Broker& b, Request& req,
                                                               protocol::ListOffsetsRequest& body) {
  using PartResp = protocol::ListOffsetsResponse::ListOffsetsPartitionResponse;
  protocol::ListOffsetsResponse resp;
  cluster::PartitionService& parts = partitions(b);
  auto topics = b.topics().snapshot();
  for (const auto& t : body.topics) {
    auto& tout = resp.topics.emplace_back();
    tout.name = t.name;
    const TopicInfo* info = b.topics().find(*topics, t.name);
    for (const auto& p : t.partitions) {
      PartResp out;
      out.partition_index = p.partition_index;
      if (!has_partition(info, p.partition_index)) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        tout.partitions.push_back(std::move(out));
        continue;
      }
      model::TopicPartition tp{t.name, p.partition_index};
      if (auto le = parts.check_leader(tp, p.current_leader_epoch)) {
        out.error_code = code(error_code_for(*le));
        tout.partitions.push_back(std::move(out));
        continue;
      }
      // -1 latest (the last stable offset: no transactions yet), -2 earliest, -3 the record
      // with the largest timestamp, or a timestamp.
      const int64_t which = p.timestamp;
      auto op = on_callback<Result<cluster::OffsetAnswer>>(
          [&parts, &tp, which](auto done) { parts.list_offset(tp, which, done); });
      Result<cluster::OffsetAnswer> found = co_await std::move(op);
      if (!found) {
        out.error_code = code(found.error().code == Errc::invalid_argument
                                  ? ErrorCode::invalid_request  // no such offset spec
                                  : error_code_for(found.error()));
      } else {
        out.offset = found->offset;
        out.timestamp = found->timestamp;
        out.leader_epoch = found->leader_epoch;
        if (req.version == 0) {
          // v0 answers with a list of offsets; an offset of -1 means none.
          if (out.offset >= 0 && p.max_num_offsets > 0) out.old_style_offsets = {out.offset};
        }
      }
      tout.partitions.push_back(std::move(out));
    }
  }
  co_return respond(req, resp);
}

}  // namespace ordo::broker
