// Pipeline files: what parses, and the errors that name what is wrong.

#include "connect/pipeline.h"

#include <gtest/gtest.h>

namespace ordo::connect {
namespace {

TEST(Pipeline, ParsesWorkerAndSinks) {
  auto p = parse_pipeline(R"(
[worker]
bootstrap = "10.0.0.1:9092,10.0.0.2:9092"
group = "views"
data_dir = "/var/lib/ordo-connect"
http = "0.0.0.0:0"
id = "w1"

[[sink]]
name = "users"
type = "table"
topics = ["users"]

[[sink]]
name = "orders.v2"
type = "table"
topics = ["orders", "orders-archive"]
dead_letter_topic = "rejects"
key_format = "json"
value_format = "json"
)",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->bootstrap, "10.0.0.1:9092,10.0.0.2:9092");
  EXPECT_EQ(p->group, "views");
  EXPECT_EQ(p->data_dir, "/var/lib/ordo-connect");
  EXPECT_EQ(p->http_host, "0.0.0.0");
  EXPECT_EQ(p->http_port, 0);
  EXPECT_EQ(p->id, "w1");
  ASSERT_EQ(p->sinks.size(), 2u);
  EXPECT_EQ(p->sinks[1].name, "orders.v2");
  EXPECT_EQ(p->sinks[1].topics, (std::vector<std::string>{"orders", "orders-archive"}));
  EXPECT_EQ(p->sinks[0].dead_letter_topic, "users.dlq");
  EXPECT_EQ(p->sinks[1].dead_letter_topic, "rejects");
  EXPECT_EQ(p->sinks[0].key_format, "bytes");
  EXPECT_EQ(p->sinks[0].value_format, "bytes");
  EXPECT_EQ(p->sinks[1].key_format, "json");
  EXPECT_EQ(p->sinks[1].value_format, "json");
}

TEST(Pipeline, DefaultsAndNoHttp) {
  auto p = parse_pipeline(
      "[worker]\nhttp = \"\"\n[[sink]]\nname = \"a\"\ntype = \"table\"\n"
      "topics = [\"t\"]\n",
      "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->bootstrap, "127.0.0.1:9092");
  EXPECT_EQ(p->group, "ordo-connect");
  EXPECT_TRUE(p->http_host.empty());
}

TEST(Pipeline, ParsesSourcesWithTheirDefaults) {
  auto p = parse_pipeline(R"(
[[source]]
name = "Shop-1"
type = "postgres"
conninfo = "host=127.0.0.1 dbname=shop"

[[source]]
name = "crm"
type = "postgres"
conninfo = "dbname=crm"
topic_prefix = "cdc.crm"
slot = "crm_slot"
publication = "crm pub"
tables = ["public.users", "sales.orders"]
create_publication = false
snapshot = false
partitions = 3
heartbeat_ms = 500
keys = { "public.events" = ["at", "seq"] }
)",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_TRUE(p->sinks.empty());
  ASSERT_EQ(p->sources.size(), 2u);
  const PgSourceConfig& a = p->sources[0];
  EXPECT_EQ(a.topic_prefix, "Shop-1");
  EXPECT_EQ(a.slot, "ordo_shop_1");
  EXPECT_EQ(a.publication, "ordo_shop_1");
  EXPECT_TRUE(a.tables.empty());
  EXPECT_TRUE(a.create_publication);
  EXPECT_TRUE(a.snapshot);
  EXPECT_EQ(a.partitions, 1);
  EXPECT_EQ(a.heartbeat_ms, 10000);
  const PgSourceConfig& b = p->sources[1];
  EXPECT_EQ(b.conninfo, "dbname=crm");
  EXPECT_EQ(b.topic_prefix, "cdc.crm");
  EXPECT_EQ(b.slot, "crm_slot");
  EXPECT_EQ(b.publication, "crm pub");
  EXPECT_EQ(b.tables, (std::vector<std::string>{"public.users", "sales.orders"}));
  EXPECT_FALSE(b.create_publication);
  EXPECT_FALSE(b.snapshot);
  EXPECT_EQ(b.partitions, 3);
  EXPECT_EQ(b.heartbeat_ms, 500);
  EXPECT_EQ(b.keys.at("public.events"), (std::vector<std::string>{"at", "seq"}));
}

TEST(Pipeline, ParsesRedisSinks) {
  auto p = parse_pipeline(R"(
[[sink]]
name = "cache"
type = "redis"
topics = ["app.public.users"]
address = "10.1.2.3:6380"
db = 2
key_prefix = "user:"
offsets_key = "offsets"
ttl_s = 60
field = "after"
)",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  const SinkConfig& s = p->sinks.at(0);
  EXPECT_EQ(s.type, "redis");
  EXPECT_EQ(s.host, "10.1.2.3");
  EXPECT_EQ(s.port, 6380);
  EXPECT_EQ(s.db, 2);
  EXPECT_EQ(s.key_prefix, "user:");
  EXPECT_EQ(s.offsets_key, "offsets");
  EXPECT_EQ(s.ttl_s, 60);
  EXPECT_EQ(s.field, "after");
  auto d = parse_pipeline("[[sink]]\nname = \"c\"\ntype = \"redis\"\ntopics = [\"t\"]\n", "p.toml");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sinks[0].host, "127.0.0.1");
  EXPECT_EQ(d->sinks[0].port, 6379);
  EXPECT_EQ(d->sinks[0].db, 0);
  auto m = parse_pipeline(
      "[[sink]]\nname = \"c\"\ntype = \"memcached\"\ntopics = [\"t\"]\n"
      "tombstone_ttl_s = 60\n",
      "p.toml");
  ASSERT_TRUE(m) << m.error().to_string();
  EXPECT_EQ(m->sinks[0].port, 11211);
  EXPECT_EQ(m->sinks[0].tombstone_ttl_s, 60);
}

TEST(Pipeline, ParsesPostgresSinks) {
  auto p = parse_pipeline(
      "[[sink]]\nname = \"copy\"\ntype = \"postgres\"\ntopics = [\"t\"]\n"
      "conninfo = \"dbname=r\"\ntable = \"public.users\"\nfield = \"after\"\n",
      "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->sinks[0].conninfo, "dbname=r");
  EXPECT_EQ(p->sinks[0].table, "public.users");
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"[[sink]]\nname = \"c\"\ntype = \"postgres\"\ntopics = [\"t\"]\ntable = \"s.t\"\n",
            "conninfo must be a string"},
           {"[[sink]]\nname = \"c\"\ntype = \"postgres\"\ntopics = [\"t\"]\nconninfo = \"\"\n"
            "table = \"users\"\n",
            "table 'users' is not schema.table"},
           {"[[sink]]\nname = \"c\"\ntype = \"table\"\ntopics = [\"t\"]\ntable = \"s.t\"\n",
            "table is for postgres sinks"},
       }) {
    auto bad = parse_pipeline(text, "p.toml");
    ASSERT_FALSE(bad) << text;
    EXPECT_NE(bad.error().message.find(expect), std::string::npos) << bad.error().message;
  }
}

TEST(Pipeline, ParsesAggregateSinks) {
  auto p = parse_pipeline(R"(
[[sink]]
name = "unread"
type = "aggregate"
topics = ["app.public.emails"]
field = "after"
group_by = "mailbox"
sum = "size"
where = { unread = true, folder = "inbox", flags = 3 }
)",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  const SinkConfig& s = p->sinks.at(0);
  EXPECT_EQ(s.group_by, "mailbox");
  EXPECT_EQ(s.sum, "size");
  EXPECT_EQ(s.output_topic, "unread");
  EXPECT_EQ(s.where, (std::map<std::string, std::string>{
                         {"unread", "true"}, {"folder", "\"inbox\""}, {"flags", "3"}}));
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"[[sink]]\nname = \"a\"\ntype = \"aggregate\"\ntopics = [\"t\"]\n",
            "group_by must be a string"},
           {"[[sink]]\nname = \"a\"\ntype = \"aggregate\"\ntopics = [\"t\"]\ngroup_by = \"g\"\n"
            "where = { x = 1.5 }\n",
            "where.x must be a string, integer or boolean"},
           {"[[sink]]\nname = \"a\"\ntype = \"aggregate\"\ntopics = [\"t\"]\ngroup_by = \"g\"\n"
            "output_topic = \"t\"\n",
            "reads its own output_topic"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\ngroup_by = \"g\"\n",
            "group_by is for aggregate sinks"},
       }) {
    auto bad = parse_pipeline(text, "p.toml");
    ASSERT_FALSE(bad) << text;
    EXPECT_NE(bad.error().message.find(expect), std::string::npos) << bad.error().message;
  }
}

TEST(Pipeline, ParsesClaimsSinks) {
  auto p = parse_pipeline("[[sink]]\nname = \"u\"\ntype = \"claims\"\ntopics = [\"claims\"]\n",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->sinks[0].output_topic, "claims.results");
  auto two = parse_pipeline("[[sink]]\nname = \"u\"\ntype = \"claims\"\ntopics = [\"a\", \"b\"]\n",
                            "p.toml");
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message.find("a claims sink reads one topic"), std::string::npos);
  auto grouped = parse_pipeline(
      "[[sink]]\nname = \"u\"\ntype = \"claims\"\ntopics = [\"a\"]\ngroup_by = \"x\"\n", "p.toml");
  ASSERT_FALSE(grouped);
  EXPECT_NE(grouped.error().message.find("group_by is for aggregate sinks"), std::string::npos);
}

TEST(Pipeline, ParsesSearchSinks) {
  auto p = parse_pipeline(
      "[[sink]]\nname = \"s\"\ntype = \"search\"\ntopics = [\"t\"]\n"
      "fields = [\"subject\", \"body\"]\n",
      "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->sinks[0].fields, (std::vector<std::string>{"subject", "body"}));
  auto bad = parse_pipeline(
      "[[sink]]\nname = \"s\"\ntype = \"table\"\ntopics = [\"t\"]\nfields = [\"a\"]\n", "p.toml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("fields is for search sinks"), std::string::npos);
}

TEST(Pipeline, TableTopicsHoldOnlyTopicCharacters) {
  EXPECT_EQ(table_topic("shop", "public", "users"), "shop.public.users");
  EXPECT_EQ(table_topic("shop", "my schema", "Ordres\"2\""), "shop.my_schema.Ordres_2_");
  EXPECT_EQ(table_topic("p", "s", std::string(300, 't')).size(), 249u);
}

TEST(Pipeline, ErrorsNameTheProblem) {
  const std::string sink = "[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\n";
  const std::string src = "[[source]]\nname = \"s\"\ntype = \"postgres\"\nconninfo = \"x\"\n";
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"", "no [[sink]]"},
           {"[worker\n", "line 1"},
           {"[worker]\nbootstrapp = \"x\"\n" + sink, "line 2: unknown key 'bootstrapp' in worker"},
           {"[worker]\nhttp = \"nohost\"\n" + sink, "worker.http 'nohost'"},
           {"[worker]\nhttp = \"h:70000\"\n" + sink, "worker.http 'h:70000'"},
           {"[worker]\nhttp = \"h:80x\"\n" + sink, "worker.http 'h:80x'"},
           {"[worker]\ngroup = 5\n" + sink, "worker.group must be a string"},
           {"[worker]\nid = \"a/b\"\n" + sink, "worker.id 'a/b'"},
           {sink + sink, "two sinks are named 'a'"},
           {"[[sink]]\nname = \"a b\"\ntype = \"table\"\ntopics = [\"t\"]\n", "sink name 'a b'"},
           {"[[sink]]\nname = \"a\"\ntype = \"memcache\"\ntopics = [\"t\"]\n",
            "unknown type 'memcache'"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = []\n",
            "topics must be a non-empty"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"a/b\"]\n", "valid topic names"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\n", "topics must be"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\nextra = 1\n",
            "line 5: unknown key 'extra' in sink 'a'"},
           {"sink = 3\n", "array of tables"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\n"
            "dead_letter_topic = \"t\"\n",
            "reads its own dead_letter_topic"},
           {"other = 1\n", "line 1: unknown key 'other' in the file"},
           {sink + "value_format = \"avro\"\n", "value_format 'avro' is not bytes or json"},
           {sink + "db = 1\n", "db is for redis sinks"},
           {sink + "key_prefix = \"x\"\n", "key_prefix is for redis and memcached sinks"},
           {"[[sink]]\nname = \"a\"\ntype = \"memcached\"\ntopics = [\"t\"]\ndb = 1\n",
            "db is for redis sinks"},
           {sink + "field = \"\"\n", "field is empty"},
           {"[[sink]]\nname = \"a\"\ntype = \"redis\"\ntopics = [\"t\"]\naddress = \"h\"\n",
            "address 'h' is not HOST:PORT"},
           {"[[sink]]\nname = \"a\"\ntype = \"redis\"\ntopics = [\"t\"]\ndb = -1\n",
            "db must be an integer 0-65535"},
           {src + src, "two sources are named 's'"},
           {"[[source]]\nname = \"s\"\ntype = \"mysql\"\nconninfo = \"\"\n",
            "unknown type 'mysql'"},
           {"[[source]]\nname = \"s\"\ntype = \"postgres\"\n", "conninfo must be a string"},
           {src + "slot = \"Bad-Slot\"\n", "slot must be 1-63 of [a-z0-9_]"},
           {src + "tables = [\"users\"]\n", "table 'users' is not schema.table"},
           {src + "partitions = 0\n", "partitions must be an integer 1-10000"},
           {src + "snapshot = \"yes\"\n", "snapshot must be true or false"},
           {src + "keys = { \"public.t\" = [] }\n", "keys.public.t is empty"},
           {src + "keys = { \"t\" = [\"id\"] }\n", "keys: 't' is not schema.table"},
           {src + "bogus = 1\n", "line 5: unknown key 'bogus' in source 's'"},
           // Before its name, or without one: the section by number and line.
           {sink + "[[sink]]\nfeild = \"after\"\nname = \"b\"\n",
            "line 6: unknown key 'feild' in sink 'b'"},
           {sink + "[[sink]]\ntype = \"table\"\nfeild = \"after\"\n",
            "line 7: unknown key 'feild' in [[sink]] number 2 (line 5)"},
       }) {
    auto p = parse_pipeline(text, "p.toml");
    ASSERT_FALSE(p) << text;
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_NE(p.error().message.find(expect), std::string::npos) << p.error().message;
    EXPECT_TRUE(p.error().message.starts_with("p.toml: ")) << p.error().message;
  }
}

}  // namespace
}  // namespace ordo::connect
