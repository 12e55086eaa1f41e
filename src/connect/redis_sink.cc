#include "connect/redis_sink.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <deque>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ordo::connect {

namespace {

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

std::string redis_offsets_field(const model::TopicPartition& tp) {
  return tp.topic + ":" + std::to_string(tp.partition);
}

std::string redis_keys_set(std::string_view key_prefix, const model::TopicPartition& tp) {
  return std::string(key_prefix) + "__ordo_keys:" + redis_offsets_field(tp);
}

RedisSink::RedisSink(RedisSinkOptions options) : options_(std::move(options)) {
  if (options_.offsets_key.empty()) options_.offsets_key = options_.key_prefix + "__ordo_offsets";
}

RedisSink::~RedisSink() {
  disconnect();
}

void RedisSink::disconnect() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

Result<void> RedisSink::connect() {
  if (ctx_) return ok();
  timeval tv{options_.timeout_ms / 1000, int(options_.timeout_ms % 1000) * 1000};
  ctx_ = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
  if (!ctx_ || ctx_->err) {
    std::string why = ctx_ ? ctx_->errstr : "out of memory";
    disconnect();
    return make_error(Errc::io, "redis {}:{}: {}", options_.host, options_.port, why);
  }
  redisSetTimeout(ctx_, tv);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", options_.db)));
  if (!r || r->type == REDIS_REPLY_ERROR) {
    std::string why = r ? r->str : ctx_->errstr;
    disconnect();
    return make_error(Errc::io, "redis SELECT {}: {}", options_.db, why);
  }
  return ok();
}

Result<std::optional<int64_t>> RedisSink::position(const model::TopicPartition& tp) {
  ORDO_TRY(connect());
  std::string field = redis_offsets_field(tp);
  Reply r(static_cast<redisReply*>(redisCommand(ctx_, "HGET %b %b", options_.offsets_key.data(),
                                                options_.offsets_key.size(), field.data(),
                                                field.size())));
  if (!r || r->type == REDIS_REPLY_ERROR) {
    std::string why = r ? r->str : ctx_->errstr;
    disconnect();
    return make_error(Errc::io, "redis HGET {}: {}", options_.offsets_key, why);
  }
  if (r->type == REDIS_REPLY_NIL) return std::optional<int64_t>();
  int64_t v = -1;
  std::string_view s(r->str, r->len);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r->type != REDIS_REPLY_STRING || ec != std::errc() || p != s.data() + s.size() || v < 0) {
    return make_error(Errc::corrupt, "redis {} {}: '{}' is not an offset", options_.offsets_key,
                      field, s);
  }
  return std::optional<int64_t>(v);
}

Result<std::vector<std::string>> RedisSink::members(const std::string& set) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    Reply r(static_cast<redisReply*>(
        redisCommand(ctx_, "SSCAN %b %s COUNT 1000", set.data(), set.size(), cursor.c_str())));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      std::string why = r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
      disconnect();
      return make_error(Errc::io, "redis SSCAN {}: {}", set, why);
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    for (size_t i = 0; i < r->element[1]->elements; ++i) {
      keys.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
    }
  } while (cursor != "0");
  return keys;
}

Result<void> RedisSink::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                              int64_t next_offset) {
  ORDO_TRY(connect());
  // The commands of one MULTI/EXEC, queued with pipelining and read back together. Runs of
  // plain SETs become one MSET and runs of deletes one DEL, in the batch's order (a later
  // argument of the same key wins within an MSET, as a later command would), so a batch is
  // a handful of commands and replies instead of one per record. With a TTL each key is a
  // SET ... EX of its own.
  struct Command {
    const char* name;
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    void add(std::string_view a) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
  };
  std::deque<std::string> strings;  // keys and numbers the arguments point into
  std::vector<Command> cmds;
  auto command = [&](const char* name) -> Command& {
    cmds.push_back(Command{name, {}, {}});
    cmds.back().add(name);
    return cmds.back();
  };
  // The command a key (and value) joins: the current run of this kind while it has room
  // (a bounded argument count per command, however many keys a truncate finds).
  constexpr size_t kMaxArgs = 1025;
  auto run_of = [&](const char* name) -> Command& {
    Command& last = cmds.back();
    return last.name == std::string_view(name) && last.argv.size() + 2 <= kMaxArgs ? last
                                                                                   : command(name);
  };
  command("MULTI");
  // Which keys the partition holds after the batch: true for a SET (SADD to the partition's
  // set at the end), false for a DEL (SREM). A truncate marker deletes the stored members
  // (read before the transaction: this task is the partition's only writer) and the keys
  // this batch set before it, then the set itself.
  const std::string& keys_set = strings.emplace_back(redis_keys_set(options_.key_prefix, tp));
  std::unordered_map<std::string_view, bool> live;
  bool stored_members_gone = false;
  const std::string& ttl = strings.emplace_back(std::to_string(options_.ttl_s));
  for (const auto& c : changes) {
    if (c.truncate) {
      if (!stored_members_gone) {
        auto keys = ORDO_TRY(members(keys_set));
        for (auto& k : keys) run_of("DEL").add(strings.emplace_back(std::move(k)));
        run_of("DEL").add(keys_set);
        stored_members_gone = true;
      }
      for (const auto& [k, set] : live) {
        if (set) run_of("DEL").add(k);
      }
      live.clear();
      continue;
    }
    const std::string& key = strings.emplace_back(options_.key_prefix + c.key);
    live.insert_or_assign(std::string_view(key), c.value.has_value());
    if (c.value) {
      if (options_.ttl_s > 0) {
        Command& set = command("SET");
        set.add(key);
        set.add(*c.value);
        set.add("EX");
        set.add(ttl);
      } else {
        Command& mset = run_of("MSET");
        mset.add(key);
        mset.add(*c.value);
      }
    } else {
      run_of("DEL").add(key);
    }
  }
  for (bool add : {true, false}) {
    const char* name = add ? "SADD" : "SREM";
    for (const auto& [k, set] : live) {
      if (set != add) continue;
      Command& cmd = run_of(name);
      if (cmd.argv.size() == 1) cmd.add(keys_set);
      cmd.add(k);
    }
  }
  Command& hset = command("HSET");
  hset.add(options_.offsets_key);
  hset.add(strings.emplace_back(redis_offsets_field(tp)));
  hset.add(strings.emplace_back(std::to_string(next_offset)));
  command("EXEC");
  for (auto& cmd : cmds) {
    if (redisAppendCommandArgv(ctx_, int(cmd.argv.size()), cmd.argv.data(), cmd.lens.data()) !=
        REDIS_OK) {
      disconnect();
      return make_error(Errc::io, "redis: cannot queue a command");
    }
  }
  Result<void> result = ok();
  for (size_t i = 0; i < cmds.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK) {
      std::string why = ctx_->errstr;
      disconnect();
      return make_error(Errc::io, "redis: {}", why);
    }
    Reply r(static_cast<redisReply*>(raw));
    bool last = i + 1 == cmds.size();
    if (r->type == REDIS_REPLY_ERROR && result) {
      result = make_error(Errc::io, "redis {}: {}", cmds[i].name, std::string(r->str, r->len));
    } else if (last && r->type != REDIS_REPLY_ARRAY && result) {
      result = make_error(Errc::io, "redis EXEC: the transaction was not applied");
    } else if (last && result) {
      // A command that failed while EXEC ran (a key of another type): the others did run.
      for (size_t e = 0; e < r->elements; ++e) {
        if (r->element[e]->type == REDIS_REPLY_ERROR) {
          result = make_error(Errc::corrupt, "redis: a command of the transaction failed: {}",
                              std::string(r->element[e]->str, r->element[e]->len));
          break;
        }
      }
    }
  }
  if (!result) disconnect();
  return result;
}

}  // namespace ordo::connect
