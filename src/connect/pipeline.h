#pragma once
// A pipeline file (TOML) says what `ordo connect run` runs: where the Kafka cluster is, where
// the worker keeps its state and serves HTTP, and its sinks. docs/connect.md has the keys.
//
//   [worker]
//   bootstrap = "127.0.0.1:9092"   # any Kafka-compatible cluster
//   group = "ordo-connect"         # each sink consumes as group "<group>.<sink name>"
//   data_dir = "./connect-data"    # a table view lives in <data_dir>/views/<name>
//   http = "127.0.0.1:9645"        # status and views; "" for none; port 0 picks one
//   id = "worker-1"                # optional: static group membership (group.instance.id
//                                  # "<id>.<sink>"), so a restarted worker gets its
//                                  # partitions back at once; unique per worker
//
//   [[sink]]
//   name = "users"                 # [a-zA-Z0-9._-], unique
//   type = "table"                 # the RocksDB table view
//   topics = ["users"]
//   dead_letter_topic = "users.dlq"  # records the sink cannot apply; default "<name>.dlq"
//   key_format = "bytes"           # or "json": keys that do not parse go to the dead letters
//   value_format = "bytes"         # or "json": likewise for values (tombstones always pass)
//   field = "after"                # store only this field of a JSON value; null: delete
//
//   [[sink]]                       # type "redis": SET/DEL per key, offsets in the same MULTI
//   name = "cache"
//   type = "redis"
//   topics = ["app.public.users"]
//   address = "127.0.0.1:6379"
//   db = 0
//   key_prefix = "user:"
//   offsets_key = "user:__ordo_offsets"  # the default
//   ttl_s = 0                      # 0: no expiry
//
//   [[sink]]                       # type "memcached": versioned CAS writes (memcached_sink.h)
//   name = "cache"
//   type = "memcached"
//   topics = ["app.public.users"]
//   address = "127.0.0.1:11211"
//   key_prefix = "user:"
//   ttl_s = 0
//   tombstone_ttl_s = 86400
//
//   [[sink]]                       # type "postgres": upserts, deletes and the offset per txn
//   name = "users-copy"
//   type = "postgres"
//   topics = ["app.public.users"]
//   conninfo = "host=127.0.0.1 dbname=reporting"
//   table = "public.users"         # a unique index on the key columns
//   value_format = "json"
//   field = "after"
//
//   [[sink]]                       # type "aggregate": count and sum per group, published
//   name = "unread"
//   type = "aggregate"
//   topics = ["app.public.emails"]
//   field = "after"
//   group_by = "mailbox_id"
//   sum = "size"                   # optional
//   where = { unread = true }      # optional equalities
//   output_topic = "unread"        # compacted; default: the name
//
//   [[sink]]                       # type "claims": first claim wins (claims.h)
//   name = "usernames"
//   type = "claims"
//   topics = ["claims"]            # exactly one
//   output_topic = "claims.results"  # the decisions; default "<topic>.results"
//
//   [[sink]]                       # type "search": a Xapian full-text index (search_index.h)
//   name = "mail-search"
//   type = "search"
//   topics = ["app.public.emails"]
//   field = "after"
//   fields = ["subject", "body"]   # default: every string field
//
//   [[source]]
//   name = "shop"                  # [a-zA-Z0-9._-], unique among sources
//   type = "postgres"              # change capture (pg_source.h)
//   conninfo = "host=127.0.0.1 port=5432 dbname=shop user=ordo"
//   topic_prefix = "shop"          # topics "<prefix>.<schema>.<table>"; default: name
//   slot = "ordo_shop"             # default "ordo_<name>"; publication defaults to the same
//   tables = ["public.users"]      # of a publication the source creates; default: all tables
//   create_publication = true      # false: it must exist
//   snapshot = true                # read the tables once when the slot is created
//   partitions = 1                 # of each topic the source creates
//   heartbeat_ms = 10000
//   keys = { "public.events" = ["id"] }  # key columns where the replica identity has none

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "connect/pg_source.h"

namespace ordo::connect {

struct SinkConfig {
  std::string name;
  std::string type;  // table, redis, memcached, postgres, aggregate, claims, search
  std::vector<std::string> topics;
  std::string dead_letter_topic;       // default "<name>.dlq"
  std::string key_format = "bytes";    // bytes, json
  std::string value_format = "bytes";  // bytes, json
  std::string field;  // store only this field of a JSON value (null or absent: delete)
  // type = "redis" and "memcached"
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // the type's default: 6379, 11211
  int db = 0;         // redis
  std::string key_prefix;
  std::string offsets_key;  // redis; default key_prefix + "__ordo_offsets"
  int64_t ttl_s = 0;
  int64_t tombstone_ttl_s = 86'400;  // memcached
  // type = "postgres"
  std::string conninfo;
  std::string table;  // "schema.table"
  // type = "aggregate"
  std::string group_by;
  std::string sum;
  std::map<std::string, std::string> where;  // field -> JSON text of the value
  std::string output_topic;  // aggregate: default the sink's name; claims: "<topic>.results"
  // type = "search"
  std::vector<std::string> fields;  // indexed fields of the value; empty: every string field
};

struct PipelineConfig {
  std::string bootstrap = "127.0.0.1:9092";
  std::string group = "ordo-connect";
  std::string data_dir = "./connect-data";
  std::string http_host = "127.0.0.1";  // empty: no HTTP
  uint16_t http_port = 9645;
  std::string id;  // empty: dynamic membership
  std::vector<SinkConfig> sinks;
  std::vector<PgSourceConfig> sources;
};

// Parses a pipeline file's text; errors name the key (and the line for TOML syntax). Unknown
// keys are errors, as in the broker's settings, named with their line and section ("line 7:
// unknown key 'feild' in sink 'users'").
Result<PipelineConfig> parse_pipeline(std::string_view text, std::string_view source_name);
Result<PipelineConfig> load_pipeline(const std::string& path);

}  // namespace ordo::connect
