// `ordo consume`: prints messages of chosen partitions without a consumer group.
//
// The broker has no group coordinator yet, and librdkafka's high-level consumer needs a
// group.id even for rd_kafka_assign(), so this uses the legacy (simple) consumer:
// rd_kafka_consume_start_queue() per partition onto one queue, read with
// rd_kafka_consume_batch_queue(). Without a group.id it sends no FindCoordinator, OffsetFetch
// or OffsetCommit; only Metadata, ListOffsets and Fetch.

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "cli/client.h"
#include "cli/commands.h"

namespace ordo::cli {

namespace {

constexpr int kPollMs = 200;
constexpr size_t kBatchMax = 1000;
constexpr size_t kOutputFlushBytes = 64 * 1024;

// ---- the output format (kcat's %-codes) ----

enum class Field {
  literal,
  topic,
  partition,
  offset,
  key,
  value,
  timestamp,
  headers,
  key_len,
  value_len
};

struct FormatPart {
  Field field;
  std::string text;  // for literal
};

Result<std::vector<FormatPart>> parse_format(std::string_view f) {
  std::vector<FormatPart> parts;
  auto literal = [&parts](char c) {
    if (parts.empty() || parts.back().field != Field::literal)
      parts.push_back({Field::literal, ""});
    parts.back().text += c;
  };
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '\\' && i + 1 < f.size()) {
      char e = f[++i];
      switch (e) {
        case 'n':
          literal('\n');
          break;
        case 't':
          literal('\t');
          break;
        case 'r':
          literal('\r');
          break;
        case '0':
          literal('\0');
          break;
        case '\\':
          literal('\\');
          break;
        default:
          literal('\\');
          literal(e);
      }
    } else if (c == '%') {
      if (i + 1 == f.size()) {
        return make_error(Errc::invalid_argument, "-f: '%' at the end of the format");
      }
      char code = f[++i];
      Field fld;
      switch (code) {
        case 't':
          fld = Field::topic;
          break;
        case 'p':
          fld = Field::partition;
          break;
        case 'o':
          fld = Field::offset;
          break;
        case 'k':
          fld = Field::key;
          break;
        case 's':
          fld = Field::value;
          break;
        case 'T':
          fld = Field::timestamp;
          break;
        case 'h':
          fld = Field::headers;
          break;
        case 'K':
          fld = Field::key_len;
          break;
        case 'S':
          fld = Field::value_len;
          break;
        case '%':
          literal('%');
          continue;
        default:
          return make_error(Errc::invalid_argument,
                            "-f: unknown code %{} (known: %t %p %o %k %s %T %h %K %S %%)", code);
      }
      parts.push_back({fld, ""});
    } else {
      literal(c);
    }
  }
  return parts;
}

void append_message(std::string& out, const std::vector<FormatPart>& parts,
                    const rd_kafka_message_t* m) {
  for (const auto& p : parts) {
    switch (p.field) {
      case Field::literal:
        out += p.text;
        break;
      case Field::topic:
        out += rd_kafka_topic_name(m->rkt);
        break;
      case Field::partition:
        fmt::format_to(std::back_inserter(out), "{}", m->partition);
        break;
      case Field::offset:
        fmt::format_to(std::back_inserter(out), "{}", m->offset);
        break;
      case Field::key:
        if (m->key) out.append(static_cast<const char*>(m->key), m->key_len);
        break;
      case Field::value:
        if (m->payload) out.append(static_cast<const char*>(m->payload), m->len);
        break;
      case Field::key_len:
        fmt::format_to(std::back_inserter(out), "{}", m->key ? int64_t(m->key_len) : -1);
        break;
      case Field::value_len:
        fmt::format_to(std::back_inserter(out), "{}", m->payload ? int64_t(m->len) : -1);
        break;
      case Field::timestamp: {
        rd_kafka_timestamp_type_t type;
        fmt::format_to(std::back_inserter(out), "{}", rd_kafka_message_timestamp(m, &type));
        break;
      }
      case Field::headers: {
        rd_kafka_headers_t* hdrs = nullptr;
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) break;
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); ++i) {
          if (i) out += ',';
          out += name;
          // A null value prints as the name alone, an empty one as "name=".
          if (val) {
            out += '=';
            out.append(static_cast<const char*>(val), size);
          }
        }
        break;
      }
    }
  }
}

// ---- where to start ----

struct StartAt {
  enum Kind { offset, timestamp } kind;
  int64_t value;  // an offset (or a librdkafka logical one) or a timestamp in ms
};

Result<StartAt> parse_from(std::string_view s) {
  if (s == "beginning") return StartAt{StartAt::offset, RD_KAFKA_OFFSET_BEGINNING};
  if (s == "end") return StartAt{StartAt::offset, RD_KAFKA_OFFSET_END};
  if (!s.empty() && s[0] == '@') {
    int64_t ts = ORDO_TRY(parse_int(s.substr(1), "--from @timestamp"));
    if (ts < 0) return make_error(Errc::invalid_argument, "--from: negative timestamp");
    return StartAt{StartAt::timestamp, ts};
  }
  int64_t v = ORDO_TRY(parse_int(s, "--from (beginning, end, OFFSET, -N or @TIMESTAMP_MS)"));
  if (v < 0) return StartAt{StartAt::offset, RD_KAFKA_OFFSET_TAIL(-v)};
  return StartAt{StartAt::offset, v};
}

// Absolute start offsets per partition. Starting the fetchers at absolute offsets (rather than
// librdkafka's logical BEGINNING/END) checks them up front and avoids the fetchers' own offset
// lookup, which librdkafka retries only after a timer when the partition's leader is not yet
// known (up to a second lost at start).
Result<std::map<int32_t, int64_t>> start_offsets(rd_kafka_t* rk, const std::string& topic,
                                                 const std::vector<int32_t>& partitions,
                                                 const StartAt& from) {
  auto start = ORDO_TRY(list_offsets(rk, topic, partitions, -2));
  auto end = ORDO_TRY(list_offsets(rk, topic, partitions, -1));
  std::map<int32_t, int64_t> out;
  std::map<int32_t, int64_t> at_time;
  if (from.kind == StartAt::timestamp) {
    at_time = ORDO_TRY(list_offsets(rk, topic, partitions, from.value));
  }
  for (int32_t p : partitions) {
    int64_t lo = start[p], hi = end[p];
    int64_t o = from.value;
    if (from.kind == StartAt::timestamp) {
      o = at_time[p] < 0 ? hi : at_time[p];
    } else if (o == RD_KAFKA_OFFSET_BEGINNING) {
      o = lo;
    } else if (o == RD_KAFKA_OFFSET_END) {
      o = hi;
    } else if (o <= RD_KAFKA_OFFSET_TAIL_BASE) {
      o = std::max(lo, hi - (RD_KAFKA_OFFSET_TAIL_BASE - o));
    } else if (o < lo || o > hi) {
      return make_error(Errc::out_of_range, "offset {} is outside {} [{}]: offsets [{}, {})", o,
                        topic, p, lo, hi);
    }
    out[p] = o;
  }
  return out;
}

// Errors after which a partition delivers nothing more: the command stops.
bool is_fatal(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__FATAL:
      return true;
    default:
      return false;
  }
}

// Stops the partitions (the fetchers) before the queue, topic and client go away.
struct Started {
  rd_kafka_topic_t* rkt;
  std::vector<int32_t> partitions;
  ~Started() {
    for (int32_t p : partitions) rd_kafka_consume_stop(rkt, p);
  }
};

Result<void> run(const ConsumeArgs& a) {
  auto format = ORDO_TRY(parse_format(a.format));
  StartAt from = ORDO_TRY(parse_from(a.from));
  std::vector<std::pair<std::string, std::string>> defaults = {
      {"enable.partition.eof", "true"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      // An offset that falls out of the log (retention) stops the command with an error
      // instead of silently skipping to an end.
      {"auto.offset.reset", "error"},
  };
  // librdkafka reports a partition's end only from a fetch at the end offset, which the broker
  // holds for fetch.wait.max.ms (500 ms by default) waiting for data.
  if (a.exit_at_end) defaults.emplace_back("fetch.wait.max.ms", "100");
  auto conf = ORDO_TRY(make_conf(a.client, defaults));
  auto rk = ORDO_TRY(make_client(RD_KAFKA_CONSUMER, std::move(conf)));
  auto md = ORDO_TRY(fetch_metadata(rk.get()));
  const rd_kafka_metadata_topic_t* t = ORDO_TRY(require_topic(*md, a.topic));
  std::vector<int32_t> all = partition_ids(*t);
  std::vector<int32_t> partitions = a.partitions.empty() ? all : a.partitions;
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
  for (int32_t p : partitions) {
    if (!std::binary_search(all.begin(), all.end(), p)) {
      return make_error(Errc::not_found, "topic '{}' has no partition {} (it has {})", a.topic, p,
                        all.size());
    }
  }
  md.reset();
  auto offsets = ORDO_TRY(start_offsets(rk.get(), a.topic, partitions, from));

  TopicPtr rkt(rd_kafka_topic_new(rk.get(), a.topic.c_str(), nullptr));
  if (!rkt) return kafka_error(rd_kafka_last_error(), fmt::format("topic '{}'", a.topic));
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  Started started{rkt.get(), {}};
  for (int32_t p : partitions) {
    if (rd_kafka_consume_start_queue(rkt.get(), p, offsets[p], q.get()) == -1) {
      return kafka_error(rd_kafka_last_error(), fmt::format("start {} [{}]", a.topic, p));
    }
    started.partitions.push_back(p);
  }

  install_stop_handlers();

  std::map<int32_t, bool> at_end;
  for (int32_t p : partitions) at_end[p] = false;
  size_t ends = 0;  // partitions whose at_end is true
  int64_t printed = 0;
  std::string out;
  std::vector<rd_kafka_message_t*> raw(kBatchMax);
  std::vector<MessagePtr> batch;
  bool done = a.count == 0 || partitions.empty();
  Result<void> result;
  while (!done && !stop_requested()) {
    rd_kafka_poll(rk.get(), 0);  // serves the error callback (e.g. all brokers down)
    ssize_t n = rd_kafka_consume_batch_queue(q.get(), kPollMs, raw.data(), raw.size());
    if (n < 0) return kafka_error(rd_kafka_last_error(), "consume");
    batch.clear();
    for (ssize_t i = 0; i < n; ++i) batch.emplace_back(raw[size_t(i)]);
    for (const auto& m : batch) {
      if (done) break;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (!at_end[m->partition]) {
          at_end[m->partition] = true;
          ++ends;
        }
        if (a.exit_at_end && ends == partitions.size()) done = true;
        continue;
      }
      if (m->err) {
        std::string text = rd_kafka_message_errstr(m.get());
        Error e = kafka_error(m->err, fmt::format("{} [{}]", a.topic, m->partition), text);
        if (is_fatal(m->err)) {
          result = e;
          done = true;
        } else {
          print_error(e);  // librdkafka retries these
        }
        continue;
      }
      if (at_end[m->partition]) {
        at_end[m->partition] = false;
        --ends;
      }
      append_message(out, format, m.get());
      if (++printed == a.count) done = true;
      if (out.size() >= kOutputFlushBytes) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    out.clear();
    std::fflush(stdout);
  }
  return result;
}

}  // namespace

int consume(const ConsumeArgs& args) {
  auto r = run(args);
  std::fflush(stdout);
  if (!r) {
    print_error(r.error());
    return 1;
  }
  return 0;
}

}  // namespace ordo::cli
