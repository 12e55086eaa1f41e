// Fuzz target for the broker's request handling (src/broker): the input is one request frame
// (header + body, no size prefix) as the server hands it to Broker::handle().
//
// One broker runs for the whole process, on a temporary data dir with auto-created topics, so
// inputs reach every handler: decoders, produce validation (including the legacy message-set
// up-conversion), fetch, list offsets, topic administration and configs. Each input must come
// back as a response or as a "close the connection" error, never a crash; a response must be a
// well-formed frame whose size prefix matches its bytes. Fetches wait at most 1 ms
// (fetch.max.wait.ms); consumer-group requests that wait for other members at most ~150 ms.

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "base/assert.h"
#include "base/coding.h"
#include "base/log.h"
#include "broker/broker.h"
#include "protocol/codec.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace ordo::broker {
namespace {

struct Harness {
  std::string dir;
  std::unique_ptr<Broker> broker;
  asio::io_context io;
  ConnectionState conn;

  Harness() {
    char tmpl[] = "/tmp/ordo-fuzz-broker-XXXXXX";
    ORDO_ASSERT(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    set_log_threshold(LogLevel::error);  // handlers log every rejected input
    BrokerConfig c;
    c.data_dir = dir + "/data";
    c.log.flush_mode = storage::FlushMode::none;
    c.log.segment_bytes = 1 << 20;
    c.socket_request_max_bytes = 1 << 20;
    c.message_max_bytes = 1 << 19;
    c.fetch_max_wait_ms = 1;  // long polls end at once
    // Group answers that wait (JoinGroup, SyncGroup) end within ~100 ms: session timeouts are
    // capped at 50 ms (and rebalance timeouts with them), the group thread ticks every 100 ms.
    c.offsets_topic_num_partitions = 2;
    c.group_initial_rebalance_delay_ms = 0;
    c.group_min_session_timeout_ms = 1;
    c.group_max_session_timeout_ms = 50;
    auto b = Broker::open(c);
    ORDO_ASSERT(b.has_value());
    broker = std::move(*b);
    conn.produce_wakeup = std::make_unique<Wakeup>(io.get_executor());
  }
  ~Harness() {
    (void)broker->close();
    broker.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Harness& harness() {
  static Harness* h = [] {
    auto* created = new Harness();
    std::atexit([] { delete &harness(); });
    return created;
  }();
  return *h;
}

void check_frame(const ResponseFrame& f) {
  auto bytes = protocol::flatten(f.chunks);
  ORDO_ASSERT(bytes.has_value());
  ORDO_ASSERT(bytes->size() == f.size);
  ORDO_ASSERT(f.size >= 8);  // size prefix + correlation id
  ORDO_ASSERT(load_be32(bytes->data()) == f.size - 4);
}

}  // namespace
}  // namespace ordo::broker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ordo::broker;
  if (size > (1 << 16)) return 0;
  Harness& h = harness();
  h.io.restart();  // the previous input's work guard stopped it when released
  auto out = std::make_shared<std::optional<HandlerOutcome>>();
  asio::co_spawn(h.io, h.broker->handle(std::vector<uint8_t>(data, data + size), h.conn),
                 [out](std::exception_ptr e, HandlerOutcome o) {
                   ORDO_ASSERT(!e);
                   *out = std::move(o);
                 });
  // Runs until the request is answered: fetch waits are capped at 1 ms, everything else goes
  // to the storage threads and back.
  auto guard = asio::make_work_guard(h.io);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!*out) {
    h.io.run_one_for(std::chrono::milliseconds(100));
    ORDO_ASSERT(std::chrono::steady_clock::now() < deadline);  // a hang is a bug too
  }
  guard.reset();
  ORDO_ASSERT(int((*out)->response.has_value()) + int((*out)->close.has_value()) <= 1);
  if ((*out)->response) check_frame(*(*out)->response);
  return 0;
}
