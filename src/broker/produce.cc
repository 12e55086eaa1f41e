// Produce: validate each partition's batches, hand them to the partition's writer in the order
// the requests arrived on the connection, answer by acks (0: nothing, 1: written, -1: durable
// under the topic's flush policy; in a cluster: committed by a quorum, refused with
// NOT_ENOUGH_REPLICAS when fewer than min.insync.replicas are in sync, REQUEST_TIMED_OUT when
// not committed within the request's timeout).

#include <asio/steady_timer.hpp>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>

#include "base/clock.h"
#include "broker/groups.h"
#include "broker/handlers.h"
#include "broker/legacy.h"
#include "broker/producer_ids.h"
#include "compression/records.h"
#include "model/record_batch.h"
#include "protocol/messages/init_producer_id_request.h"
#include "protocol/messages/init_producer_id_response.h"
#include "protocol/messages/produce_request.h"
#include "protocol/messages/produce_response.h"

namespace ordo::broker {

namespace {

using PartitionResponse = protocol::ProduceResponse::PartitionProduceResponse;

struct PartitionWork {
  size_t topic_index = 0;
  model::TopicPartition tp;
  std::span<uint8_t> in_frame;     // the records, in the request frame
  std::vector<uint8_t> converted;  // or, for a legacy message set, its v2 up-conversion
  PartitionResponse response;      // filled in when done (or at once on a validation error)
  bool submit = false;             // validated, ready to append
  bool answered = false;           // the append's callback ran (under Appends::mu)

  std::span<uint8_t> batches() { return converted.empty() ? in_frame : std::span(converted); }
};

void fail(PartitionWork& w, ErrorCode e, std::string message) {
  w.response.error_code = code(e);
  w.response.base_offset = -1;
  w.response.error_message = std::move(message);
}

// This node does not lead the partition (CurrentLeader is in the response from v10 on).
void fail(PartitionWork& w, const cluster::LeaderError& e) {
  set_leader_error(w.response, e);
  w.response.base_offset = -1;
}

// The appends of one request, shared with their callbacks: a request that times out answers
// before them, and late callbacks find it closed.
struct Appends {
  std::mutex mu;
  std::vector<PartitionWork> work;
  bool closed = false;
};

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// message.timestamp.before.max.ms / after.max.ms (Kafka's check of every record of a
// CreateTime topic): a description of the first record out of range, or nullopt. Decodes the
// batch once more; only topics that set a limit pay for it.
std::optional<std::string> out_of_range_timestamp(const model::RecordBatchView& batch,
                                                  const TopicSettings& settings, int64_t now_ms) {
  auto decoded = compression::decode_batch(batch);
  if (!decoded) return decoded.error().message;  // scan_batch read it: does not happen
  for (const auto& r : decoded->records) {
    int64_t ts = model::record_timestamp(batch.base_timestamp(), r.timestamp_delta);
    // Differences in unsigned arithmetic: exact for any two int64 values in this order.
    bool too_old =
        ts < now_ms && uint64_t(now_ms) - uint64_t(ts) > uint64_t(settings.timestamp_before_max_ms);
    bool too_new =
        ts > now_ms && uint64_t(ts) - uint64_t(now_ms) > uint64_t(settings.timestamp_after_max_ms);
    if (too_old || too_new) {
      return fmt::format(
          "timestamp {} of the record at offset delta {} is out of range: it must be within "
          "[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]",
          ts, r.offset_delta);
    }
  }
  return std::nullopt;
}

// Checks a partition's records (fixing header fields in place) and marks them for the append;
// sets the error otherwise. records are the request frame's bytes.
void validate(PartitionWork& w, std::span<uint8_t> records, const TopicSettings& settings,
              int16_t version, int64_t now_ms) {
  if (records.empty()) {
    return fail(w, ErrorCode::invalid_record, "no record batch");
  }
  // Produce v0-v2 may carry the legacy message format (magic 0 or 1): up-converted to v2.
  if (records.size() > 16 && records[16] != 2) {
    if (version >= 3) {
      return fail(w, ErrorCode::unsupported_for_message_format,
                  "produce v3+ requires record batches (magic 2)");
    }
    auto converted = upconvert_legacy_message_set(records, now_ms);
    if (!converted) {
      return fail(w,
                  converted.error().code == Errc::invalid_argument
                      ? ErrorCode::unsupported_compression_type
                      : ErrorCode::corrupt_message,
                  converted.error().message);
    }
    w.converted = std::move(*converted);
  } else {
    w.in_frame = records;
  }
  std::span<uint8_t> rest = w.batches();
  bool recompress = false;
  while (!rest.empty()) {
    // Bounded by the bytes present; the size limit is checked next, with its own error.
    auto view = model::RecordBatchView::parse(rest, rest.size());
    if (!view) {
      return fail(w, ErrorCode::corrupt_message, view.error().message);
    }
    if (int64_t(view->size_bytes()) > settings.max_message_bytes) {
      return fail(w, ErrorCode::message_too_large,
                  fmt::format("batch of {} bytes exceeds max.message.bytes {}", view->size_bytes(),
                              settings.max_message_bytes));
    }
    if (auto c = view->verify_crc(); !c) {
      return fail(w, ErrorCode::corrupt_message, c.error().message);
    }
    // Count and offset range, control/transactional flags, producer fields (as Kafka).
    if (auto h = model::check_produced_batch(*view); !h) {
      return fail(w, ErrorCode::invalid_record, h.error().message);
    }
    std::span<uint8_t> batch = rest.first(view->size_bytes());
    // Every record is checked (a compressed batch is decompressed for that, within
    // compression::kMaxBatchRecordsBytes): the true max timestamp, and keys.
    auto summary = compression::scan_batch(*view);
    if (!summary) {
      Errc e = summary.error().code;
      return fail(w,
                  e == Errc::invalid_argument ? ErrorCode::unsupported_compression_type
                  : e == Errc::too_large      ? ErrorCode::invalid_record
                                              : ErrorCode::corrupt_message,
                  summary.error().message);
    }
    if (summary->keyless > 0 && storage::policy_compacts(settings.log.cleanup_policy)) {
      // As Kafka: a record without a key has no place in a table.
      return fail(w, ErrorCode::invalid_record,
                  "Compacted topic cannot accept message without key");
    }
    const int64_t max_ts =
        model::record_timestamp(view->base_timestamp(), summary->max_timestamp_delta);
    if (settings.timestamp_type == model::TimestampType::create_time &&
        (settings.timestamp_before_max_ms != kNoLimit ||
         settings.timestamp_after_max_ms != kNoLimit)) {
      if (auto bad = out_of_range_timestamp(*view, settings, now_ms)) {
        return fail(w, ErrorCode::invalid_timestamp, std::move(*bad));
      }
    }
    if (settings.compression_codec &&
        (view->attributes() & model::batch_attr::kCompressionMask) != *settings.compression_codec) {
      recompress = true;
    }
    if (settings.timestamp_type == model::TimestampType::log_append_time) {
      model::set_log_append_time(batch, now_ms);
      w.response.log_append_time_ms = now_ms;
    } else if (max_ts != view->max_timestamp()) {
      // The header's maxTimestamp is not trusted (some clients leave it -1): retention and
      // time lookups depend on it.
      model::set_max_timestamp(batch, max_ts);
    }
    rest = rest.subspan(view->size_bytes());
  }
  if (recompress) {
    // compression.type: every batch in the topic's codec (its header, timestamps included,
    // kept; the CRC recomputed). The result is checked against max.message.bytes again.
    std::vector<uint8_t> out;
    std::span<uint8_t> in = w.batches();
    while (!in.empty()) {
      auto view = model::RecordBatchView::parse(in, in.size());
      ORDO_ASSERT(view.has_value());  // validated above
      std::span<uint8_t> batch = in.first(view->size_bytes());
      in = in.subspan(view->size_bytes());
      if ((view->attributes() & model::batch_attr::kCompressionMask) ==
          *settings.compression_codec) {
        out.insert(out.end(), batch.begin(), batch.end());
        continue;
      }
      auto recoded = compression::recode_batch(
          *view, *settings.compression_codec,
          settings.compression_level.value_or(compression::kDefaultLevel));
      if (!recoded) return fail(w, ErrorCode::corrupt_message, recoded.error().message);
      if (int64_t(recoded->size()) > settings.max_message_bytes) {
        return fail(w, ErrorCode::message_too_large,
                    fmt::format("batch of {} bytes after recompression exceeds "
                                "max.message.bytes {}",
                                recoded->size(), settings.max_message_bytes));
      }
      out.insert(out.end(), recoded->begin(), recoded->end());
    }
    w.converted = std::move(out);
  }
  w.submit = true;
}

}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::produce(Broker& b, Request& req,
                                                          protocol::ProduceRequest& body) {
  const int16_t acks = body.acks;
  const int64_t now = SystemClock::instance().now_ms();

  std::vector<PartitionWork> work;
  cluster::PartitionService& parts = partitions(b);
  auto topics = b.topics().snapshot();
  for (size_t ti = 0; ti < body.topic_data.size(); ++ti) {
    const auto& t = body.topic_data[ti];
    const TopicInfo* info = b.topics().find(*topics, t.name);
    std::optional<TopicSettings> settings;
    if (info) {
      auto s = resolve_topic_settings(b.config(), info->configs);
      if (s) settings = std::move(*s);
    }
    for (const auto& p : t.partition_data) {
      PartitionWork w;
      w.topic_index = ti;
      w.tp = {t.name, p.index};
      w.response.index = p.index;
      if (acks != 0 && acks != 1 && acks != -1) {
        fail(w, ErrorCode::invalid_required_acks, "acks must be 0, 1 or -1");
      } else if (!settings || !has_partition(info, p.index)) {
        fail(w,
             model::is_valid_topic_name(t.name) ? ErrorCode::unknown_topic_or_partition
                                                : ErrorCode::invalid_topic_exception,
             "unknown topic or partition");
      } else if (auto le = parts.check_leader(w.tp)) {
        fail(w, *le);
      } else if (t.name == kOffsetsTopic) {
        // Only the group coordinator writes there (Kafka refuses it the same way).
        fail(w, ErrorCode::invalid_topic_exception, "__consumer_offsets is internal");
      } else if (int32_t in_sync = acks == -1 ? parts.in_sync_replicas(w.tp) : 0;
                 acks == -1 && in_sync < settings->min_insync_replicas) {
        fail(w, ErrorCode::not_enough_replicas,
             fmt::format("min.insync.replicas is {} but {} replica(s) are in sync",
                         settings->min_insync_replicas, in_sync));
      } else if (!p.records) {
        fail(w, ErrorCode::invalid_record, "null records");
      } else {
        validate(w, req.writable(p.records->bytes()), *settings, req.version, now);
      }
      work.push_back(std::move(w));
    }
  }

  // Wait for this request's turn on the connection, so that the partition writers see the
  // connection's produce requests in the order they were sent.
  ConnectionState& conn = req.conn;
  const uint64_t ticket = conn.produce_tickets++;
  while (conn.produce_turn != ticket) co_await conn.produce_wakeup->wait();

  storage::AppendOptions options;
  options.verify_crc = false;  // validate() did
  // acks=-1: every in-sync replica (one node: durable under the topic's flush policy).
  const cluster::Consistency consistency =
      acks == -1 ? cluster::Consistency::quorum : cluster::Consistency::leader;
  auto appends = std::make_shared<Appends>();
  appends->work = std::move(work);
  // A cluster's quorum acknowledgements wait at most the request's timeout (a single node's
  // durable appends wait for their fsync, as before).
  std::unique_ptr<asio::steady_timer> timeout;
  if (acks == -1 && cluster_node(b) != nullptr) {
    timeout = std::make_unique<asio::steady_timer>(co_await asio::this_coro::executor);
    timeout->expires_after(std::chrono::milliseconds(std::max(body.timeout_ms, 0)));
  }
  co_await on_callback<int>([&](auto done) {
    auto fired = std::make_shared<std::atomic<bool>>(false);
    auto finish = [fired, done]() mutable {
      if (!fired->exchange(true)) done(0);
    };
    auto remaining = std::make_shared<std::atomic<size_t>>(1);
    auto finish_one = [remaining, finish]() mutable {
      if (remaining->fetch_sub(1) == 1) finish();
    };
    if (timeout) timeout->async_wait([finish](const asio::error_code&) mutable { finish(); });
    cluster::PartitionService* ps = &parts;
    for (size_t i = 0; i < appends->work.size(); ++i) {
      PartitionWork& w = appends->work[i];
      if (!w.submit) continue;
      remaining->fetch_add(1);
      // Borrowed: on the partition's own thread the log writes the frame's bytes before this
      // returns; elsewhere it copies them (the frame is not needed once this returns).
      parts.append(w.tp, w.batches(), consistency, options,
                   [appends, i, ps, finish_one](Result<storage::AppendResult> r) mutable {
                     {
                       std::lock_guard lk(appends->mu);
                       // Closed: the request was answered (timed out) and its work moved
                       // out; this late answer has nowhere to go.
                       if (!appends->closed) {
                         PartitionWork& w = appends->work[i];
                         w.answered = true;
                         if (r) {
                           w.response.base_offset = r->first_offset.value();
                           w.response.log_start_offset = r->log_start_offset.value();
                         } else if (auto le = ps->check_leader(w.tp)) {
                           fail(w, *le);  // the leadership moved (or the partition went)
                           w.response.error_message = r.error().message;
                         } else {
                           fail(w, error_code_for(r.error()), r.error().message);
                         }
                       }
                     }
                     finish_one();
                   });
    }
    // Every append of this request is queued at its writer: the next request may go.
    ++conn.produce_turn;
    conn.produce_wakeup->notify_all();
    finish_one();
  });
  if (timeout) timeout->cancel();
  {
    std::lock_guard lk(appends->mu);
    appends->closed = true;
    for (auto& w : appends->work) {
      if (w.submit && !w.answered) {
        fail(w, ErrorCode::request_timed_out,
             fmt::format("not committed by a quorum within {} ms", body.timeout_ms));
      }
    }
    work = std::move(appends->work);
  }

  if (acks == 0) {
    // No response to carry the error: like Kafka, close the connection so that the client
    // notices (it refreshes metadata and reconnects).
    for (const auto& w : work) {
      if (w.response.error_code != 0) {
        co_return HandlerOutcome{
            {},
            make_error(Errc::invalid_argument, "acks=0 produce to {} failed: error {} ({})",
                       w.tp.to_string(), w.response.error_code,
                       w.response.error_message.value_or(""))};
      }
    }
    co_return HandlerOutcome{};
  }
  protocol::ProduceResponse resp;
  for (const auto& t : body.topic_data) resp.responses.push_back({t.name, {}, {}});
  for (auto& w : work) {
    resp.responses[w.topic_index].partition_responses.push_back(std::move(w.response));
  }
  co_return respond(req, resp);
}

// ---- InitProducerId ----

asio::awaitable<HandlerOutcome> Broker::Handlers::init_producer_id(
    Broker& b, Request& req, protocol::InitProducerIdRequest& body) {
  protocol::InitProducerIdResponse resp;
  resp.producer_id = -1;
  resp.producer_epoch = -1;
  if (body.transactional_id) {
    // No transaction coordinator yet.
    resp.error_code = code(ErrorCode::invalid_request);
    co_return respond(req, resp);
  }
  // An idempotent producer (no transactional id) gets a new id with epoch 0, also when it asks
  // to bump the epoch of its old one (v3+), as Kafka does: the sequences start over.
  auto op = run_on<Result<int64_t>>(metadata(b), [&b] { return next_producer_id(b); });
  Result<int64_t> id = co_await std::move(op);
  if (!id) {
    ORDO_LOG_ERROR("InitProducerId: {}", id.error().to_string());
    // busy: cluster mode without a reachable controller (retriable).
    resp.error_code = code(id.error().code == Errc::busy ? ErrorCode::coordinator_not_available
                                                         : ErrorCode::kafka_storage_error);
    co_return respond(req, resp);
  }
  resp.producer_id = *id;
  resp.producer_epoch = 0;
  co_return respond(req, resp);
}

}  // namespace ordo::broker
