// `ordo produce`: one message per line of stdin, sent with librdkafka's producer. Delivery
// reports are counted on this thread (rd_kafka_poll / rd_kafka_flush serve them).

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/clock.h"
#include "cli/client.h"
#include "cli/commands.h"

namespace ordo::cli {

namespace {

// Errors printed one by one before they are only counted.
constexpr int64_t kErrorsShownMax = 10;
// Wait past message.timeout.ms for the last delivery reports before counting them as failed.
constexpr int64_t kFlushMarginMs = 10'000;
// The CLI's message.timeout.ms (librdkafka's own is 300 s); -X message.timeout.ms=... wins.
constexpr const char* kMessageTimeoutMs = "30000";

struct Delivery {
  int64_t delivered = 0;
  int64_t failed = 0;
  int64_t errors_shown = 0;

  void report_failure(const std::string& text) {
    ++failed;
    if (errors_shown < kErrorsShownMax) {
      std::fprintf(stderr, "ordo: %s\n", text.c_str());
      if (++errors_shown == kErrorsShownMax) {
        std::fprintf(stderr, "ordo: (further delivery errors are only counted)\n");
      }
    }
  }
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* d = static_cast<Delivery*>(opaque);
  if (m->err) {
    d->report_failure(fmt::format("delivery to {} [{}] failed: {} ({})",
                                  m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
                                  rd_kafka_err2str(m->err), rd_kafka_err2name(m->err)));
  } else {
    ++d->delivered;
  }
}

Result<std::vector<std::pair<std::string, std::string>>> parse_headers(
    const std::vector<std::string>& items) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : items) out.push_back(ORDO_TRY(split_key_value(item, "-H")));
  return out;
}

Result<void> run(const ProduceArgs& a, Delivery& d) {
  auto headers = ORDO_TRY(parse_headers(a.headers));
  if (a.key_separator && a.key_separator->empty()) {
    return make_error(Errc::invalid_argument, "-K: the key separator cannot be empty");
  }
  std::vector<std::pair<std::string, std::string>> defaults = {
      {"message.timeout.ms", kMessageTimeoutMs}};
  if (!a.acks.empty()) defaults.emplace_back("acks", a.acks == "all" ? "-1" : a.acks);
  if (!a.compression.empty()) defaults.emplace_back("compression.codec", a.compression);
  auto conf = ORDO_TRY(make_conf(a.client, defaults));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
  rd_kafka_conf_set_opaque(conf.get(), &d);
  char timeout_buf[32];
  size_t timeout_len = sizeof(timeout_buf);
  int64_t message_timeout_ms = 300'000;
  if (rd_kafka_conf_get(conf.get(), "message.timeout.ms", timeout_buf, &timeout_len) ==
      RD_KAFKA_CONF_OK) {
    message_timeout_ms = std::atoll(timeout_buf);
  }
  auto rk = ORDO_TRY(make_client(RD_KAFKA_PRODUCER, std::move(conf)));

  install_stop_handlers();
  std::vector<rd_kafka_vu_t> vus;
  char* line = nullptr;
  size_t cap = 0;
  ssize_t len;
  // Reads until EOF, an error or a stop signal; every line becomes one message.
  while (!stop_requested() && (len = ::getline(&line, &cap, stdin)) >= 0) {
    if (len > 0 && line[len - 1] == '\n') --len;
    std::string_view text(line, size_t(len));
    std::optional<std::string_view> key;
    std::string_view value = text;
    if (a.key_separator) {
      size_t at = text.find(*a.key_separator);
      if (at != std::string_view::npos) {
        key = text.substr(0, at);
        value = text.substr(at + a.key_separator->size());
      }
    }
    vus.clear();
    auto add = [&vus](rd_kafka_vtype_t type) -> rd_kafka_vu_t& {
      rd_kafka_vu_t& v = vus.emplace_back();
      std::memset(&v, 0, sizeof(v));
      v.vtype = type;
      return v;
    };
    add(RD_KAFKA_VTYPE_TOPIC).u.cstr = a.topic.c_str();
    add(RD_KAFKA_VTYPE_PARTITION).u.i32 = a.partition < 0 ? RD_KAFKA_PARTITION_UA : a.partition;
    add(RD_KAFKA_VTYPE_MSGFLAGS).u.i = RD_KAFKA_MSG_F_COPY;
    auto& v = add(RD_KAFKA_VTYPE_VALUE);
    v.u.mem.ptr = const_cast<char*>(value.data());
    v.u.mem.size = value.size();
    if (key) {
      auto& k = add(RD_KAFKA_VTYPE_KEY);
      k.u.mem.ptr = const_cast<char*>(key->data());
      k.u.mem.size = key->size();
    }
    for (const auto& [hk, hv] : headers) {
      auto& h = add(RD_KAFKA_VTYPE_HEADER);
      h.u.header.name = hk.c_str();
      h.u.header.val = hv.data();
      h.u.header.size = ssize_t(hv.size());
    }
    // A full local queue drains as deliveries complete or time out (message.timeout.ms), so
    // this retry loop ends.
    for (;;) {
      ErrorPtr err(rd_kafka_produceva(rk.get(), vus.data(), vus.size()));
      if (!err) break;
      if (rd_kafka_error_code(err.get()) == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop_requested()) {
        rd_kafka_poll(rk.get(), 100);
        continue;
      }
      d.report_failure(fmt::format("produce to {}: {} ({})", a.topic,
                                   rd_kafka_error_string(err.get()),
                                   rd_kafka_error_name(err.get())));
      break;
    }
    rd_kafka_poll(rk.get(), 0);
  }
  bool read_error = !stop_requested() && std::ferror(stdin);
  std::free(line);

  // Every message is delivered or failed by message.timeout.ms after it was produced.
  int64_t deadline_ms = monotonic_ns() / 1'000'000 + message_timeout_ms + kFlushMarginMs;
  while (rd_kafka_outq_len(rk.get()) > 0 && monotonic_ns() / 1'000'000 < deadline_ms) {
    rd_kafka_flush(rk.get(), 100);
  }
  if (int left = rd_kafka_outq_len(rk.get()); left > 0) {
    // Messages still queued (and internal requests, which outq_len also counts).
    d.failed += left;
    std::fprintf(stderr, "ordo: %d messages not confirmed in time\n", left);
  }
  if (read_error) return make_error(Errc::io, "reading stdin: {}", std::strerror(errno));
  return ok();
}

}  // namespace

int produce(const ProduceArgs& args) {
  Delivery d;
  auto r = run(args, d);
  if (!r) print_error(r.error());
  if (r || d.delivered > 0 || d.failed > 0) {
    if (d.failed > 0) {
      std::fprintf(stderr, "%lld messages produced, %lld failed\n",
                   static_cast<long long>(d.delivered), static_cast<long long>(d.failed));
    } else {
      std::fprintf(stderr, "%lld messages produced\n", static_cast<long long>(d.delivered));
    }
  }
  return r && d.failed == 0 ? 0 : 1;
}

}  // namespace ordo::cli
