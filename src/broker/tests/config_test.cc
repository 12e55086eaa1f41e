#include "broker/config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace ordo::broker {
namespace {

namespace fs = std::filesystem;

// A directory under /tmp, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ordo-config-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }

 private:
  std::string path_;
};

using Env = std::map<std::string, std::string>;

std::string value_of(const BrokerConfig& c, std::string_view name) {
  for (const auto& s : describe_config(c)) {
    if (s.name == name) return s.value;
  }
  ADD_FAILURE() << "no setting " << name;
  return {};
}

// Every setting with a valid value different from its default. Keeping this list complete is
// what the coverage tests below check.
const std::vector<std::pair<std::string, std::string>> kSamples = {
    {"data.dir", "/var/lib/ordo"},
    {"listen", "0.0.0.0:0"},
    {"advertised.listen", "broker-1.example:19092"},
    {"admin.listen", "0.0.0.0:19644"},
    {"node.id", "7"},
    {"cluster.id", "prod-east"},
    {"cluster.voters", "7@127.0.0.1:9100,8@127.0.0.1:9101"},
    {"cluster.listen", "127.0.0.1:9100"},
    {"cluster.bootstrap", "true"},
    {"broker.rack", "rack-a"},
    {"default.replication.factor", "2"},
    {"offsets.topic.replication.factor", "1"},
    {"min.insync.replicas", "2"},
    {"raft.tick.ms", "20"},
    {"raft.election.ticks", "20"},
    {"raft.heartbeat.ticks", "3"},
    {"raft.write.caching", "true"},
    {"broker.heartbeat.interval.ms", "250"},
    {"broker.session.timeout.ms", "3000"},
    {"metadata.snapshot.interval.commands", "50"},
    {"network.threads", "4"},
    {"shards", "8"},
    {"storage.shard.mode", "dedicated"},
    {"flush.threads", "3"},
    {"auto.create.topics.enable", "false"},
    {"num.partitions", "12"},
    {"max.partitions", "20000"},
    {"message.max.bytes", "2000000"},
    {"socket.request.max.bytes", "4000000"},
    {"connection.max.inflight.bytes", "1048576"},
    {"connection.max.inflight.requests", "50"},
    {"connections.max.idle.ms", "120000"},
    {"max.connections", "500"},
    {"connections.max.per.ip", "20"},
    {"queued.max.request.bytes", "-1"},
    {"fetch.max.wait.ms", "750"},
    {"offsets.topic.num.partitions", "16"},
    {"offsets.topic.segment.bytes", "1048576"},
    {"offsets.retention.minutes", "1440"},
    {"offsets.retention.check.interval.ms", "30000"},
    {"offset.metadata.max.bytes", "1024"},
    {"group.min.session.timeout.ms", "1000"},
    {"group.max.session.timeout.ms", "600000"},
    {"group.initial.rebalance.delay.ms", "0"},
    {"group.max.size", "50"},
    {"log.flush.mode", "interval"},
    {"log.flush.interval.ms", "250"},
    {"log.segment.bytes", "1048576"},
    {"log.segment.ms", "60000"},
    {"log.retention.ms", "-1"},
    {"log.retention.bytes", "1073741824"},
    {"log.index.interval.bytes", "8192"},
    {"log.preallocate.mode", "zero_fill"},
    {"log.preallocate.bytes", "65536"},
    {"log.cleanup.policy", "compact,delete"},
    {"log.cleaner.enable", "false"},
    {"log.cleaner.backoff.ms", "1000"},
    {"log.cleaner.dedupe.buffer.size", "16777216"},
    {"log.cleaner.io.max.bytes.per.second", "10485760"},
    {"log.cleaner.delete.retention.ms", "3600000"},
    {"log.cleaner.min.cleanable.ratio", "0.25"},
    {"log.cleaner.min.compaction.lag.ms", "5000"},
    {"log.cleaner.max.compaction.lag.ms", "86400000"},
    {"producer.id.expiration.ms", "3600000"},
    {"log.truncate.corrupt", "true"},
};

std::string env_name(std::string name) {
  for (char& ch : name) ch = ch == '.' ? '_' : char(std::toupper(static_cast<unsigned char>(ch)));
  return "ORDO_" + name;
}

TEST(BrokerConfig, DefaultsLoadAndValidate) {
  auto c = load_config("", {}, {});
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->data_dir, "./data");
  EXPECT_EQ(c->listen_host, "127.0.0.1");
  EXPECT_EQ(c->listen_port, 9092);
  EXPECT_EQ(c->advertised_host, "");
  EXPECT_EQ(c->advertised_port, 0);
  EXPECT_EQ(c->shards, 1);
  EXPECT_TRUE(c->auto_create_topics);
  EXPECT_EQ(c->log.flush_mode, storage::FlushMode::durable);
  EXPECT_EQ(c->log.retention_bytes, -1);
  EXPECT_EQ(value_of(*c, "listen"), "127.0.0.1:9092");
  EXPECT_EQ(value_of(*c, "advertised.listen"), "");
  EXPECT_EQ(value_of(*c, "log.flush.mode"), "durable");
  EXPECT_TRUE(BrokerConfig{}.validate());
}

TEST(BrokerConfig, TomlFileWithTablesAndDottedKeys) {
  TempDir dir;
  auto path = dir.write("ordo.toml", R"(# a comment
data.dir = "/srv/ordo"
listen = "0.0.0.0:0"
advertised.listen = "[::1]:19092"
node.id = 3
shards = "4"                        # a string is parsed like an --set value
auto.create.topics.enable = false

[log]
retention.ms = 5000
flush.mode = "interval"
flush.interval.ms = 250
preallocate = { mode = "zero_fill", bytes = 65536 }
truncate.corrupt = true

[log.segment]
bytes = 1048576

[connection.max.inflight]
requests = 16
)");
  auto c = load_config(path, {}, {});
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->data_dir, "/srv/ordo");
  EXPECT_EQ(c->listen_host, "0.0.0.0");
  EXPECT_EQ(c->listen_port, 0);
  EXPECT_EQ(c->advertised_host, "::1");
  EXPECT_EQ(c->advertised_port, 19092);
  EXPECT_EQ(c->node_id, 3);
  EXPECT_EQ(c->shards, 4);
  EXPECT_FALSE(c->auto_create_topics);
  EXPECT_EQ(c->log.retention_ms, 5000);
  EXPECT_EQ(c->log.flush_mode, storage::FlushMode::interval);
  EXPECT_EQ(c->log.flush_interval_ms, 250);
  EXPECT_EQ(c->log.preallocate, storage::Preallocate::zero_fill);
  EXPECT_EQ(c->log.preallocate_bytes, 65536);
  EXPECT_TRUE(c->truncate_corrupt);
  EXPECT_EQ(c->log.segment_bytes, 1048576);
  EXPECT_EQ(c->connection_max_inflight_requests, 16);
  // Untouched settings keep their defaults.
  EXPECT_EQ(c->num_partitions, 1);
  EXPECT_EQ(c->log.segment_ms, BrokerConfig{}.log.segment_ms);
}

TEST(BrokerConfig, LaterSourcesWin) {
  TempDir dir;
  auto path = dir.write("ordo.toml",
                        "log.retention.ms = 1000\n"
                        "num.partitions = 3\n"
                        "shards = 2\n");
  Env env = {{"ORDO_LOG_RETENTION_MS", "2000"},
             {"ORDO_NUM_PARTITIONS", "4"},
             {"ORDO_LOG_LEVEL", "debug"},  // read by base/log.cc, not a setting
             {"PATH", "/usr/bin"},         // not ORDO_: ignored
             {"SHARDS", "9"}};
  ConfigOverrides flags = {{"log.retention.ms", "3000"}};
  auto c = load_config(path, env, flags);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->log.retention_ms, 3000);  // flag over env over file
  EXPECT_EQ(c->num_partitions, 4);       // env over file
  EXPECT_EQ(c->shards, 2);               // file over default

  // The same flag twice: the last one wins.
  flags.push_back({"log.retention.ms", "4000"});
  EXPECT_EQ(load_config(path, env, flags)->log.retention_ms, 4000);
}

TEST(BrokerConfig, FileErrorsNameKeyAndLine) {
  TempDir dir;
  auto expect_error = [&](const std::string& text, const std::vector<std::string>& parts) {
    auto path = dir.write("bad.toml", text);
    auto c = load_config(path, {}, {});
    ASSERT_FALSE(c) << text;
    for (const auto& p : parts) {
      EXPECT_NE(c.error().message.find(p), std::string::npos)
          << "'" << c.error().message << "' lacks '" << p << "'";
    }
  };
  expect_error("shards = 2\n\nlog.retension.ms = 5\n",
               {"bad.toml:3", "unknown setting 'log.retension.ms'"});
  expect_error("[log]\nsegment.bytes = 100000\nretension.ms = 5\n",
               {"bad.toml:3", "'log.retension.ms'"});
  expect_error("shards = 1\n[bogus]\n", {"bad.toml:2", "unknown setting 'bogus'"});
  expect_error("log = 5\n", {"bad.toml:1", "'log'"});
  expect_error("shards = 1000\n", {"bad.toml:1", "shards", "outside [1, 256]"});
  expect_error("node.id = 1.5\n", {"bad.toml:1", "node.id", "expected an integer"});
  expect_error("cluster.id = 5\n", {"cluster.id", "expected a string"});
  expect_error("auto.create.topics.enable = 1\n", {"expected a boolean"});
  expect_error("num.partitions = [1, 2]\n", {"num.partitions", "array"});
  expect_error("log.flush.mode = \"fast\"\n", {"bad.toml:1", "log.flush.mode", "fast"});
  // TOML syntax errors carry line and column.
  expect_error("shards = 1\nlisten = \n", {"bad.toml:2:"});
  expect_error("shards = 1\nshards = 2\n", {"bad.toml:2:"});

  auto missing = load_config(dir.write("x", "") + ".missing", {}, {});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("x.missing"), std::string::npos);
}

TEST(BrokerConfig, EnvErrors) {
  auto c = load_config("", {{"ORDO_LOG_RETENSION_MS", "5"}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("ORDO_LOG_RETENSION_MS"), std::string::npos);

  c = load_config("", {{"ORDO_SHARDS", "zero"}}, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("ORDO_SHARDS"), std::string::npos);
  EXPECT_NE(c.error().message.find("'zero' is not an integer"), std::string::npos);

  c = load_config("", {{"ORDO_LOG_FLUSH_MODE", "none"}, {"ORDO_ADVERTISED_LISTEN", "h:1"}}, {});
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->log.flush_mode, storage::FlushMode::none);
  EXPECT_EQ(c->advertised_host, "h");
}

TEST(BrokerConfig, BadValuesAreRejectedWithTheSettingName) {
  struct Case {
    std::string name, value, message;
  };
  const std::vector<Case> cases = {
      {"shards", "0", "shards: 0 is outside [1, 256]"},
      {"shards", "257", "outside"},
      {"shards", "abc", "'abc' is not an integer"},
      {"shards", "12x", "'12x' is not an integer"},
      {"shards", " 12", "not an integer"},
      {"shards", "", "not an integer"},
      {"log.retention.ms", "99999999999999999999", "outside"},
      {"log.retention.ms", "-2", "outside [-1,"},
      {"network.threads", "65", "outside [1, 64]"},
      {"num.partitions", "100001", "outside"},
      {"socket.request.max.bytes", "1023", "outside"},
      {"log.segment.bytes", "2147483648", "outside"},
      {"log.preallocate.bytes", "4095", "outside"},
      {"listen", "localhost", "not HOST:PORT"},
      {"listen", ":9092", "empty host"},
      {"listen", "", "not HOST:PORT"},
      {"listen", "host:65536", "port"},
      {"listen", "host:-1", "port"},
      {"listen", "host:", "port"},
      {"listen", "::1:9092", "brackets"},
      {"listen", "[::1]9092", "[IPV6]:PORT"},
      {"advertised.listen", "host", "not HOST:PORT"},
      {"log.flush.mode", "fast", "log.flush.mode: flush mode 'fast'"},
      {"log.preallocate.mode", "zero", "preallocate 'zero'"},
      {"auto.create.topics.enable", "yes", "not a boolean"},
      {"data.dir", "", "data.dir: must not be empty"},
      {"cluster.id", "", "must not be empty"},
      {"log.preallocate", "none", "unknown setting 'log.preallocate'"},
  };
  for (const auto& k : cases) {
    BrokerConfig c;
    auto r = set_config_value(c, k.name, k.value);
    ASSERT_FALSE(r) << k.name << "=" << k.value;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message.find(k.message), std::string::npos)
        << k.name << "=" << k.value << ": '" << r.error().message << "' lacks '" << k.message
        << "'";
    EXPECT_NE(r.error().message.find(k.name), std::string::npos) << r.error().message;
    // A failed set leaves the config as it was.
    EXPECT_EQ(value_of(c, "listen"), "127.0.0.1:9092");
  }

  // From the command line the error names the flag.
  auto c = load_config("", {}, {{"shards", "0"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("--set shards=0"), std::string::npos) << c.error().message;
}

TEST(BrokerConfig, AcceptedValueForms) {
  BrokerConfig c;
  ASSERT_TRUE(set_config_value(c, "auto.create.topics.enable", "0"));
  EXPECT_FALSE(c.auto_create_topics);
  ASSERT_TRUE(set_config_value(c, "auto.create.topics.enable", "1"));
  EXPECT_TRUE(c.auto_create_topics);
  ASSERT_TRUE(set_config_value(c, "listen", "[::]:9093"));
  EXPECT_EQ(c.listen_host, "::");
  EXPECT_EQ(c.listen_port, 9093);
  EXPECT_EQ(value_of(c, "listen"), "[::]:9093");
  ASSERT_TRUE(set_config_value(c, "listen", "example.com:65535"));
  EXPECT_EQ(c.listen_port, 65535);
  ASSERT_TRUE(set_config_value(c, "advertised.listen", "a:1"));
  ASSERT_TRUE(set_config_value(c, "advertised.listen", ""));  // back to "use listen"
  EXPECT_EQ(c.advertised_host, "");
  EXPECT_EQ(c.advertised_port, 0);
  ASSERT_TRUE(set_config_value(c, "log.retention.bytes", "-1"));
  ASSERT_TRUE(set_config_value(c, "log.index.interval.bytes", "0"));
}

TEST(BrokerConfig, ValidateChecksAcrossSettings) {
  auto c = load_config("", {},
                       {{"message.max.bytes", "2000000"}, {"socket.request.max.bytes", "1048576"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("message.max.bytes (2000000) exceeds socket.request.max.bytes"),
            std::string::npos)
      << c.error().message;

  // The log refuses batches above LogConfig::max_batch_bytes (64 MiB).
  c = load_config("", {},
                  {{"socket.request.max.bytes", "200000000"}, {"message.max.bytes", "100000000"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("largest batch"), std::string::npos) << c.error().message;

  // queued.max.request.bytes: -1 (no bound) or at least 1 MiB.
  c = load_config("", {}, {{"queued.max.request.bytes", "4096"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("queued.max.request.bytes (4096)"), std::string::npos)
      << c.error().message;
  EXPECT_TRUE(load_config("", {}, {{"queued.max.request.bytes", "-1"}}));
  EXPECT_TRUE(load_config("", {}, {{"queued.max.request.bytes", "1048576"}}));

  // The order of the flags does not matter, only the final values.
  c = load_config("", {},
                  {{"message.max.bytes", "2000000"}, {"socket.request.max.bytes", "4000000"}});
  ASSERT_TRUE(c) << c.error().to_string();

  // A config built in code is held to the same ranges as a loaded one.
  BrokerConfig b;
  b.data_dir = "";
  EXPECT_FALSE(b.validate());
  b = {};
  b.listen_host = "";
  EXPECT_FALSE(b.validate());
  b = {};
  b.shards = 0;
  auto r = b.validate();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("shards"), std::string::npos);
  b = {};
  b.advertised_port = 9000;  // a port without a host
  EXPECT_FALSE(b.validate());
  b = {};
  b.log.max_batch_bytes = 10;  // not a setting: caught by LogConfig::validate
  b.message_max_bytes = 5;
  r = b.validate();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("log: max batch bytes"), std::string::npos) << r.error().message;
}

TEST(BrokerConfig, DescribeCoversEverySettingAndRoundTrips) {
  const auto defaults = describe_config(BrokerConfig{});
  ASSERT_EQ(defaults.size(), kSamples.size());
  for (size_t i = 0; i < kSamples.size(); i++) {
    EXPECT_EQ(defaults[i].name, kSamples[i].first);
    EXPECT_FALSE(defaults[i].description.empty()) << defaults[i].name;
  }

  // Each setting changes its own entry and no other: no two rows share a field.
  for (const auto& [name, value] : kSamples) {
    BrokerConfig c;
    ASSERT_TRUE(set_config_value(c, name, value)) << name;
    auto after = describe_config(c);
    for (size_t i = 0; i < after.size(); i++) {
      if (after[i].name == name) {
        EXPECT_EQ(after[i].value, value) << name;
        EXPECT_NE(after[i].value, defaults[i].value) << name;
      } else {
        EXPECT_EQ(after[i].value, defaults[i].value)
            << "setting " << name << " changed " << after[i].name;
      }
    }
  }

  // Setting every described value back gives the same configuration, for the defaults and
  // for a config that differs from them everywhere; through --set and through the environment.
  BrokerConfig changed;
  for (const auto& [name, value] : kSamples) ASSERT_TRUE(set_config_value(changed, name, value));
  ASSERT_TRUE(changed.validate()) << changed.validate().error().to_string();
  for (const BrokerConfig& c : {BrokerConfig{}, changed}) {
    ConfigOverrides flags;
    Env env;
    for (const auto& s : describe_config(c)) {
      flags.push_back({s.name, s.value});
      env[env_name(s.name)] = s.value;
    }
    auto via_flags = load_config("", {}, flags);
    ASSERT_TRUE(via_flags) << via_flags.error().to_string();
    auto via_env = load_config("", env, {});
    ASSERT_TRUE(via_env) << via_env.error().to_string();
    for (const auto& loaded : {*via_flags, *via_env}) {
      auto a = describe_config(c);
      auto b = describe_config(loaded);
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); i++) EXPECT_EQ(a[i].value, b[i].value) << a[i].name;
    }
  }
}

TEST(BrokerConfig, EveryNameFitsTomlAndTheEnvironment) {
  const auto all = describe_config(BrokerConfig{});
  for (const auto& a : all) {
    for (const auto& b : all) {
      if (&a == &b) continue;
      // A TOML key cannot be a value and also the table of another key.
      EXPECT_FALSE(b.name.starts_with(a.name + ".")) << a.name << " / " << b.name;
      EXPECT_NE(env_name(a.name), env_name(b.name));
    }
    for (const char* reserved : {"ORDO_LOG_LEVEL", "ORDO_BENCH_DIR", "ORDO_MODEL_SEED"}) {
      EXPECT_NE(env_name(a.name), reserved);
    }
  }
}

TEST(BrokerConfig, DocsListEverySettingWithEnvAndDefault) {
  // The source tree from the build (ORDO_SOURCE_DIR); __FILE__ may be relative to the build
  // directory (ccache with a base_dir rewrites it so).
  fs::path doc = fs::path(ORDO_SOURCE_DIR) / "docs/configuration.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << doc;
  std::stringstream text;
  text << in.rdbuf();
  std::string md = text.str();
  for (const auto& s : describe_config(BrokerConfig{})) {
    std::string row_start = "| `" + s.name + "` |";
    size_t at = md.find(row_start);
    ASSERT_NE(at, std::string::npos) << s.name << " is not in " << doc;
    std::string row = md.substr(at, md.find('\n', at) - at);
    EXPECT_NE(row.find("`" + env_name(s.name) + "`"), std::string::npos) << row;
    std::string shown = s.value.empty() ? "(empty)" : "`" + s.value + "`";
    EXPECT_NE(row.find(shown), std::string::npos) << row << " lacks the default " << shown;
  }
}

TEST(BrokerConfig, ClusterVotersParseAndValidate) {
  auto v = parse_voters("3@h3:9003,1@127.0.0.1:9001,2@[::1]:9002");
  ASSERT_TRUE(v) << v.error().to_string();
  ASSERT_EQ(v->size(), 3u);
  EXPECT_EQ((*v)[0], (VoterAddress{1, "127.0.0.1", 9001}));
  EXPECT_EQ((*v)[2], (VoterAddress{3, "h3", 9003}));
  for (const char* bad : {"", "1@h", "x@h:1", "1@h:0", "1@h:1,1@h:2", "@h:1", "1@h:1,", "-1@h:1"}) {
    EXPECT_FALSE(parse_voters(bad)) << bad;
  }
  // Cluster mode is on with voters; a bootstrapping node must be one of them, and a node that
  // is not one needs its own listener.
  auto c = load_config(
      "", {},
      {{"cluster.voters", "1@127.0.0.1:9001"}, {"node.id", "1"}, {"cluster.bootstrap", "true"}});
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_TRUE(c->cluster_mode());
  EXPECT_FALSE(load_config(
      "", {},
      {{"cluster.voters", "1@127.0.0.1:9001"}, {"node.id", "2"}, {"cluster.bootstrap", "true"}}));
  EXPECT_FALSE(load_config("", {}, {{"cluster.voters", "1@127.0.0.1:9001"}, {"node.id", "2"}}));
  EXPECT_TRUE(load_config("", {},
                          {{"cluster.voters", "1@127.0.0.1:9001"},
                           {"node.id", "2"},
                           {"cluster.listen", "127.0.0.1:9002"}}));
  EXPECT_FALSE(load_config("", {}, {{"cluster.voters", "1@x"}}));
  EXPECT_FALSE(load_config("", {}, {{"raft.heartbeat.ticks", "10"}}));
  EXPECT_FALSE(BrokerConfig{}.cluster_mode());
}

TEST(BrokerConfig, OrdoEnvironmentReadsOnlyOrdoVariables) {
  ::setenv("ORDO_CONFIG_TEST_VAR", "a=b", 1);
  ::setenv("NOT_ORDO_CONFIG_TEST_VAR", "x", 1);
  auto env = ordo_environment();
  ::unsetenv("ORDO_CONFIG_TEST_VAR");
  ::unsetenv("NOT_ORDO_CONFIG_TEST_VAR");
  EXPECT_EQ(env["ORDO_CONFIG_TEST_VAR"], "a=b");
  for (const auto& [k, v] : env) EXPECT_TRUE(k.starts_with("ORDO_")) << k;
}

}  // namespace
}  // namespace ordo::broker
