// `ordo group list|describe|delete|reset-offsets`: consumer groups through librdkafka's Admin
// API (ListConsumerGroups, DescribeConsumerGroups, DeleteGroups, ListConsumerGroupOffsets,
// AlterConsumerGroupOffsets) plus ListOffsets for the partitions' log start and end. Like
// Kafka's kafka-consumer-groups tool, and like it usable against any Kafka cluster.

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cli/client.h"
#include "cli/commands.h"

namespace ordo::cli {

namespace {

using TopicPartition = std::pair<std::string, int32_t>;

// ---- output ----

// Columns padded to their widest cell and two spaces apart, as kafka-consumer-groups prints
// them. An empty cell prints as "-", so every row splits into as many words as the header.
std::string render_table(const std::vector<std::string>& header,
                         std::vector<std::vector<std::string>> rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (auto& row : rows) {
    ORDO_ASSERT(row.size() == header.size());
    for (size_t c = 0; c < row.size(); ++c) {
      if (row[c].empty()) row[c] = "-";
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      out += cells[c];
      if (c + 1 < cells.size()) out.append(width[c] - cells[c].size() + 2, ' ');
    }
    out += '\n';
  };
  line(header);
  for (const auto& row : rows) line(row);
  return out;
}

std::string offset_text(std::optional<int64_t> o) {
  return o ? std::to_string(*o) : "";
}

// "orders(0,1) payments(2)" for partitions sorted by topic, then partition.
std::string assignment_text(const std::vector<TopicPartition>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool same_topic = i > 0 && parts[i - 1].first == parts[i].first;
    if (!same_topic) out += fmt::format("{}{}(", i ? ") " : "", parts[i].first);
    out += fmt::format("{}{}", same_topic ? "," : "", parts[i].second);
  }
  return parts.empty() ? out : out + ")";
}

// ---- requests ----

// The error carried by one group's result in an admin result event.
Result<void> check_group_result(const rd_kafka_group_result_t* r, std::string_view what) {
  if (const rd_kafka_error_t* e = rd_kafka_group_result_error(r)) {
    return kafka_error(rd_kafka_error_code(e), what, rd_kafka_error_string(e));
  }
  return ok();
}

// The single group result of a ListConsumerGroupOffsets or AlterConsumerGroupOffsets event,
// with every partition error turned into the Error (the first one, naming the partition).
Result<const rd_kafka_group_result_t*> single_group_result(const rd_kafka_group_result_t** results,
                                                           size_t n, std::string_view what) {
  if (n != 1) return make_error(Errc::io, "{}: {} results for 1 group", what, n);
  ORDO_TRY(check_group_result(results[0], what));
  const rd_kafka_topic_partition_list_t* parts = rd_kafka_group_result_partitions(results[0]);
  for (int i = 0; parts && i < parts->cnt; ++i) {
    const auto& p = parts->elems[i];
    if (p.err) return kafka_error(p.err, fmt::format("{}: {} [{}]", what, p.topic, p.partition));
  }
  return results[0];
}

struct Member {
  std::string id;
  std::string client_id;
  std::string host;
  std::string instance_id;                 // static membership; empty when dynamic
  std::vector<TopicPartition> assignment;  // sorted
};

struct GroupDescription {
  rd_kafka_consumer_group_state_t state;
  bool simple;           // no protocol type: offsets committed without joining (tools, assign())
  std::string assignor;  // the protocol chosen for the generation (range, roundrobin, ...)
  std::string coordinator;
  std::vector<Member> members;  // sorted by member id
};

const char* state_name(rd_kafka_consumer_group_state_t s) {
  return rd_kafka_consumer_group_state_name(s);
}

// DescribeConsumerGroups for one group. librdkafka decodes each member's assignment (the
// consumer protocol's MemberAssignment) into a partition list.
Result<GroupDescription> describe_group(rd_kafka_t* rk, const std::string& group) {
  std::string what = fmt::format("describe group '{}'", group);
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS));
  QueuePtr q(rd_kafka_queue_new(rk));
  const char* names[] = {group.c_str()};
  rd_kafka_DescribeConsumerGroups(rk, names, 1, opts.get(), q.get());
  auto ev =
      ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT, what));
  size_t n = 0;
  const rd_kafka_ConsumerGroupDescription_t** groups =
      rd_kafka_DescribeConsumerGroups_result_groups(
          rd_kafka_event_DescribeConsumerGroups_result(ev.get()), &n);
  if (n != 1) return make_error(Errc::io, "{}: {} results for 1 group", what, n);
  const rd_kafka_ConsumerGroupDescription_t* g = groups[0];
  if (const rd_kafka_error_t* e = rd_kafka_ConsumerGroupDescription_error(g)) {
    return kafka_error(rd_kafka_error_code(e), what, rd_kafka_error_string(e));
  }
  GroupDescription out;
  out.state = rd_kafka_ConsumerGroupDescription_state(g);
  out.simple = rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g) != 0;
  const char* assignor = rd_kafka_ConsumerGroupDescription_partition_assignor(g);
  out.assignor = assignor ? assignor : "";
  if (const rd_kafka_Node_t* c = rd_kafka_ConsumerGroupDescription_coordinator(g)) {
    out.coordinator = fmt::format("{}:{} ({})", rd_kafka_Node_host(c), rd_kafka_Node_port(c),
                                  rd_kafka_Node_id(c));
  }
  size_t members = rd_kafka_ConsumerGroupDescription_member_count(g);
  for (size_t i = 0; i < members; ++i) {
    const rd_kafka_MemberDescription_t* m = rd_kafka_ConsumerGroupDescription_member(g, i);
    auto str = [](const char* s) { return std::string(s ? s : ""); };
    Member mem{str(rd_kafka_MemberDescription_consumer_id(m)),
               str(rd_kafka_MemberDescription_client_id(m)),
               str(rd_kafka_MemberDescription_host(m)),
               str(rd_kafka_MemberDescription_group_instance_id(m)),
               {}};
    const rd_kafka_MemberAssignment_t* a = rd_kafka_MemberDescription_assignment(m);
    const rd_kafka_topic_partition_list_t* parts =
        a ? rd_kafka_MemberAssignment_partitions(a) : nullptr;
    for (int j = 0; parts && j < parts->cnt; ++j) {
      mem.assignment.emplace_back(parts->elems[j].topic, parts->elems[j].partition);
    }
    std::sort(mem.assignment.begin(), mem.assignment.end());
    out.members.push_back(std::move(mem));
  }
  std::sort(out.members.begin(), out.members.end(),
            [](const Member& x, const Member& y) { return x.id < y.id; });
  return out;
}

// Every committed offset of the group (OffsetFetch for all partitions).
Result<std::map<TopicPartition, int64_t>> committed_offsets(rd_kafka_t* rk,
                                                            const std::string& group) {
  std::string what = fmt::format("committed offsets of group '{}'", group);
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS));
  QueuePtr q(rd_kafka_queue_new(rk));
  // No partition list: every partition the group has an offset for.
  ListGroupOffsetsPtr req(rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), nullptr));
  rd_kafka_ListConsumerGroupOffsets_t* arr[] = {req.get()};
  rd_kafka_ListConsumerGroupOffsets(rk, arr, 1, opts.get(), q.get());
  auto ev =
      ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT, what));
  size_t n = 0;
  const rd_kafka_group_result_t** results = rd_kafka_ListConsumerGroupOffsets_result_groups(
      rd_kafka_event_ListConsumerGroupOffsets_result(ev.get()), &n);
  const rd_kafka_group_result_t* r = ORDO_TRY(single_group_result(results, n, what));
  std::map<TopicPartition, int64_t> out;
  const rd_kafka_topic_partition_list_t* parts = rd_kafka_group_result_partitions(r);
  for (int i = 0; parts && i < parts->cnt; ++i) {
    const auto& p = parts->elems[i];
    if (p.offset >= 0) out[{p.topic, p.partition}] = p.offset;
  }
  return out;
}

// ListOffsets at `timestamp` (-2: log start, -1: end) for every partition in `parts`.
Result<std::map<TopicPartition, int64_t>> offsets_at(rd_kafka_t* rk,
                                                     const std::set<TopicPartition>& parts,
                                                     int64_t timestamp) {
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& [t, p] : parts) by_topic[t].push_back(p);
  std::map<TopicPartition, int64_t> out;
  for (const auto& [t, ps] : by_topic) {
    auto offsets = ORDO_TRY(list_offsets(rk, t, ps, timestamp));
    for (const auto& [p, o] : offsets) out[{t, p}] = o;
  }
  return out;
}

// ---- list ----

Result<void> list(const GroupArgs& a) {
  auto rk = ORDO_TRY(admin_client(a.client));
  auto opts = ORDO_TRY(admin_options(rk.get(), RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS));
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_ListConsumerGroups(rk.get(), opts.get(), q.get());
  auto ev =
      ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT, "list groups"));
  const rd_kafka_ListConsumerGroups_result_t* res =
      rd_kafka_event_ListConsumerGroups_result(ev.get());
  size_t n = 0;
  const rd_kafka_ConsumerGroupListing_t** groups =
      rd_kafka_ListConsumerGroups_result_valid(res, &n);
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_ConsumerGroupListing_t* g = groups[i];
    // ListConsumerGroups keeps the groups of protocol type "consumer" and those without one.
    bool simple = rd_kafka_ConsumerGroupListing_is_simple_consumer_group(g) != 0;
    rows.push_back({rd_kafka_ConsumerGroupListing_group_id(g),
                    state_name(rd_kafka_ConsumerGroupListing_state(g)), simple ? "" : "consumer"});
  }
  std::sort(rows.begin(), rows.end());
  std::fputs(render_table({"GROUP", "STATE", "PROTOCOL-TYPE"}, std::move(rows)).c_str(), stdout);
  // Brokers that did not answer: what the others listed is printed, and the command fails.
  size_t errors = 0;
  const rd_kafka_error_t** errs = rd_kafka_ListConsumerGroups_result_errors(res, &errors);
  for (size_t i = 0; i < errors; ++i) {
    print_error(
        kafka_error(rd_kafka_error_code(errs[i]), "list groups", rd_kafka_error_string(errs[i])));
  }
  if (errors) return make_error(Errc::io, "list groups: {} broker(s) failed", errors);
  return ok();
}

// ---- describe ----

Result<void> describe(const GroupArgs& a) {
  ORDO_ASSERT(a.groups.size() == 1);
  const std::string& group = a.groups[0];
  auto rk = ORDO_TRY(admin_client(a.client));
  GroupDescription g = ORDO_TRY(describe_group(rk.get(), group));
  auto committed = ORDO_TRY(committed_offsets(rk.get(), group));
  if (g.state == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD && g.members.empty() && committed.empty()) {
    return make_error(Errc::not_found, "group '{}' does not exist", group);
  }

  // Which member owns each partition; the rows are the partitions with a commit or an owner.
  std::map<TopicPartition, const Member*> owner;
  for (const auto& m : g.members) {
    for (const auto& tp : m.assignment) owner[tp] = &m;
  }
  std::set<TopicPartition> parts;
  for (const auto& [tp, o] : committed) parts.insert(tp);
  for (const auto& [tp, m] : owner) parts.insert(tp);
  // One ListOffsets per topic; a topic that fails (deleted since the commit) only loses its
  // end offsets and lag, and the command's exit code.
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& [t, p] : parts) by_topic[t].push_back(p);
  std::map<TopicPartition, int64_t> end;
  size_t failed_topics = 0;
  for (const auto& [t, ps] : by_topic) {
    auto offsets = list_offsets(rk.get(), t, ps, -1);
    if (!offsets) {
      print_error(offsets.error());
      ++failed_topics;
      continue;
    }
    for (const auto& [p, o] : *offsets) end[{t, p}] = o;
  }

  std::string out = render_table(
      {"GROUP", "COORDINATOR (ID)", "PROTOCOL-TYPE", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"},
      {{group, g.coordinator, g.simple ? "" : "consumer", g.assignor, state_name(g.state),
        std::to_string(g.members.size())}});
  out += '\n';
  if (g.members.empty()) {
    out += "No active members.\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& m : g.members) {
      rows.push_back({m.id, m.instance_id, m.client_id, m.host, std::to_string(m.assignment.size()),
                      assignment_text(m.assignment)});
    }
    out +=
        render_table({"MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "#PARTITIONS", "ASSIGNMENT"},
                     std::move(rows));
  }
  out += '\n';
  if (parts.empty()) {
    out += "No committed offsets and no assigned partitions.\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& tp : parts) {
      std::optional<int64_t> current, log_end, lag;
      if (auto it = committed.find(tp); it != committed.end()) current = it->second;
      if (auto it = end.find(tp); it != end.end()) log_end = it->second;
      if (current && log_end) lag = *log_end - *current;
      auto it = owner.find(tp);
      const Member* m = it == owner.end() ? nullptr : it->second;
      rows.push_back({tp.first, std::to_string(tp.second), offset_text(current),
                      offset_text(log_end), offset_text(lag), m ? m->id : "", m ? m->host : "",
                      m ? m->client_id : ""});
    }
    out += render_table({"TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                         "MEMBER-ID", "HOST", "CLIENT-ID"},
                        std::move(rows));
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  if (failed_topics) {
    return make_error(Errc::io, "log end offsets of {} topic(s) unknown", failed_topics);
  }
  return ok();
}

// ---- delete ----

Result<void> remove(const GroupArgs& a) {
  auto rk = ORDO_TRY(admin_client(a.client));
  std::vector<DeleteGroupPtr> owned;
  std::vector<rd_kafka_DeleteGroup_t*> arr;
  for (const auto& g : a.groups) {
    owned.emplace_back(rd_kafka_DeleteGroup_new(g.c_str()));
    arr.push_back(owned.back().get());
  }
  auto opts = ORDO_TRY(admin_options(rk.get(), RD_KAFKA_ADMIN_OP_DELETEGROUPS));
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_DeleteGroups(rk.get(), arr.data(), arr.size(), opts.get(), q.get());
  auto ev =
      ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_DELETEGROUPS_RESULT, "delete groups"));
  size_t n = 0;
  const rd_kafka_group_result_t** results =
      rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev.get()), &n);
  size_t failed = 0;
  for (size_t i = 0; i < n; ++i) {
    const char* name = rd_kafka_group_result_name(results[i]);
    auto r = check_group_result(results[i], fmt::format("delete group '{}'", name));
    if (r) {
      std::printf("deleted group %s\n", name);
    } else {
      print_error(r.error());
      ++failed;
    }
  }
  std::fflush(stdout);
  if (n != a.groups.size()) {
    return make_error(Errc::io, "delete groups: {} results for {} groups", n, a.groups.size());
  }
  if (failed) return make_error(Errc::io, "{} of {} groups not deleted", failed, n);
  return ok();
}

// ---- reset-offsets ----

// "2024-05-01T12:30:00", with optional seconds, fraction (ms are kept) and zone ("Z",
// "+02:00", "-0530"); without a zone the time is local, as in Kafka's tool. Milliseconds since
// the epoch.
Result<int64_t> parse_datetime(const std::string& s) {
  auto bad = [&s]() {
    return make_error(Errc::invalid_argument,
                      "--to-datetime '{}': expected YYYY-MM-DDTHH:MM[:SS[.sss]][Z|+HH:MM|-HH:MM]",
                      s);
  };
  struct tm tm {};
  size_t pos = 0;
  auto digits = [&](size_t count, int& v) {
    if (pos + count > s.size()) return false;
    v = 0;
    for (size_t i = 0; i < count; ++i) {
      char c = s[pos + i];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    pos += count;
    return true;
  };
  auto lit = [&](char c) {
    if (pos < s.size() && s[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  };
  int year, month, day, hour, minute, second = 0;
  if (!digits(4, year) || !lit('-') || !digits(2, month) || !lit('-') || !digits(2, day) ||
      !(lit('T') || lit(' ')) || !digits(2, hour) || !lit(':') || !digits(2, minute)) {
    return bad();
  }
  if (lit(':') && !digits(2, second)) return bad();
  int64_t ms = 0;
  if (lit('.')) {
    size_t start = pos;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos) {
      if (pos - start < 3) ms = ms * 10 + (s[pos] - '0');
    }
    if (pos == start) return bad();
    for (size_t n = pos - start; n < 3; ++n) ms *= 10;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t seconds;
  if (pos == s.size()) {
    tm.tm_isdst = -1;
    seconds = mktime(&tm);
  } else {
    int64_t offset_s = 0;
    if (!lit('Z')) {
      bool minus = s[pos] == '-';
      if (!lit('+') && !lit('-')) return bad();
      int oh, om;
      if (!digits(2, oh)) return bad();
      lit(':');
      if (!digits(2, om)) return bad();
      offset_s = (minus ? -1 : 1) * (oh * 3600 + om * 60);
    }
    if (pos != s.size()) return bad();
    seconds = timegm(&tm) - offset_s;
  }
  return seconds * 1000 + ms;
}

// The partitions named by --topic (all of a topic's, or TOPIC:P,P...), or with --all-topics
// those the group has committed offsets for.
Result<std::set<TopicPartition>> selected_partitions(
    rd_kafka_t* rk, const GroupArgs& a, const std::map<TopicPartition, int64_t>& committed) {
  std::set<TopicPartition> out;
  if (a.all_topics) {
    for (const auto& [tp, o] : committed) out.insert(tp);
    if (out.empty()) {
      return make_error(Errc::not_found,
                        "group '{}' has no committed offsets; name the partitions with --topic",
                        a.groups[0]);
    }
    return out;
  }
  auto md = ORDO_TRY(fetch_metadata(rk));
  for (const auto& spec : a.topics) {
    size_t colon = spec.rfind(':');
    std::string topic = spec.substr(0, colon);
    const rd_kafka_metadata_topic_t* t = ORDO_TRY(require_topic(*md, topic));
    std::vector<int32_t> all = partition_ids(*t);
    if (colon == std::string::npos) {
      for (int32_t p : all) out.insert({topic, p});
      continue;
    }
    std::string_view list = std::string_view(spec).substr(colon + 1);
    while (true) {
      size_t comma = list.find(',');
      int64_t p = ORDO_TRY(parse_int(list.substr(0, comma), "--topic partition"));
      if (!std::binary_search(all.begin(), all.end(), p)) {
        return make_error(Errc::not_found, "topic '{}' has no partition {} (it has {})", topic, p,
                          all.size());
      }
      out.insert({topic, int32_t(p)});
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return out;
}

struct Plan {
  TopicPartition tp;
  std::optional<int64_t> current;
  int64_t next;
};

// The new offset of every selected partition, kept within [log start, end] as Kafka's tool
// does (an offset outside would make the consumers reset by their auto.offset.reset).
Result<std::vector<Plan>> make_plan(rd_kafka_t* rk, const GroupArgs& a,
                                    const std::set<TopicPartition>& parts,
                                    const std::map<TopicPartition, int64_t>& committed) {
  auto start = ORDO_TRY(offsets_at(rk, parts, -2));
  auto end = ORDO_TRY(offsets_at(rk, parts, -1));
  std::map<TopicPartition, int64_t> at_time;
  if (a.to_datetime) {
    int64_t ts = ORDO_TRY(parse_datetime(*a.to_datetime));
    if (ts < 0) return make_error(Errc::invalid_argument, "--to-datetime: before 1970");
    at_time = ORDO_TRY(offsets_at(rk, parts, ts));
  }
  std::vector<Plan> plan;
  for (const auto& tp : parts) {
    std::optional<int64_t> current;
    if (auto it = committed.find(tp); it != committed.end()) current = it->second;
    int64_t lo = start.at(tp), hi = end.at(tp);
    int64_t next;
    if (a.to_earliest) {
      next = lo;
    } else if (a.to_latest) {
      next = hi;
    } else if (a.to_offset) {
      next = *a.to_offset;
    } else if (a.to_datetime) {
      // No message at or after the time: the end, where the next message will be.
      next = at_time.at(tp) < 0 ? hi : at_time.at(tp);
    } else {
      ORDO_ASSERT(a.shift_by.has_value());
      if (!current) {
        return make_error(Errc::not_found,
                          "cannot shift {} [{}]: group '{}' has no committed offset there",
                          tp.first, tp.second, a.groups[0]);
      }
      next = *current + *a.shift_by;
    }
    plan.push_back({tp, current, std::clamp(next, lo, hi)});
  }
  return plan;
}

Result<void> commit_plan(rd_kafka_t* rk, const std::string& group, const std::vector<Plan>& plan) {
  std::string what = fmt::format("commit offsets of group '{}'", group);
  PartitionListPtr list(rd_kafka_topic_partition_list_new(int(plan.size())));
  for (const auto& p : plan) {
    rd_kafka_topic_partition_list_add(list.get(), p.tp.first.c_str(), p.tp.second)->offset = p.next;
  }
  AlterGroupOffsetsPtr req(rd_kafka_AlterConsumerGroupOffsets_new(group.c_str(), list.get()));
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS));
  QueuePtr q(rd_kafka_queue_new(rk));
  rd_kafka_AlterConsumerGroupOffsets_t* arr[] = {req.get()};
  rd_kafka_AlterConsumerGroupOffsets(rk, arr, 1, opts.get(), q.get());
  auto ev =
      ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_ALTERCONSUMERGROUPOFFSETS_RESULT, what));
  size_t n = 0;
  const rd_kafka_group_result_t** results = rd_kafka_AlterConsumerGroupOffsets_result_groups(
      rd_kafka_event_AlterConsumerGroupOffsets_result(ev.get()), &n);
  ORDO_TRY(single_group_result(results, n, what));
  return ok();
}

Result<void> reset_offsets(const GroupArgs& a) {
  ORDO_ASSERT(a.groups.size() == 1);
  const std::string& group = a.groups[0];
  int targets = int(a.to_earliest) + int(a.to_latest) + int(a.to_offset.has_value()) +
                int(a.to_datetime.has_value()) + int(a.shift_by.has_value());
  if (targets != 1) {
    return make_error(Errc::invalid_argument,
                      "reset-offsets: give exactly one of --to-earliest, --to-latest, "
                      "--to-offset, --to-datetime, --shift-by");
  }
  if (a.topics.empty() == !a.all_topics) {
    return make_error(Errc::invalid_argument,
                      "reset-offsets: give --topic TOPIC[:P,P...] (repeatable) or --all-topics");
  }
  if (a.to_datetime) ORDO_TRY(parse_datetime(*a.to_datetime));  // before any request
  auto rk = ORDO_TRY(admin_client(a.client));
  GroupDescription g = ORDO_TRY(describe_group(rk.get(), group));
  // Kafka's rule: only a group without members (Empty, or Dead: unknown) can be reset; the
  // members would overwrite the offsets with their next commit.
  bool inactive = g.members.empty() && (g.state == RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY ||
                                        g.state == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD);
  auto committed = ORDO_TRY(committed_offsets(rk.get(), group));
  auto parts = ORDO_TRY(selected_partitions(rk.get(), a, committed));
  auto plan = ORDO_TRY(make_plan(rk.get(), a, parts, committed));
  if (a.execute && !inactive) {
    return make_error(Errc::busy,
                      "group '{}' is {} with {} active member(s): offsets can only be reset "
                      "when it has none (stop its consumers first)",
                      group, state_name(g.state), g.members.size());
  }

  std::vector<std::vector<std::string>> rows;
  for (const auto& p : plan) {
    rows.push_back(
        {p.tp.first, std::to_string(p.tp.second), offset_text(p.current), std::to_string(p.next)});
  }
  std::string table =
      render_table({"TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"}, std::move(rows));
  if (a.execute) {
    ORDO_TRY(commit_plan(rk.get(), group, plan));
    std::fputs(table.c_str(), stdout);
    return ok();
  }
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "ordo: dry run, nothing changed: add --execute to commit these offsets\n");
  if (!inactive) {
    std::fprintf(stderr,
                 "ordo: group '%s' is %s with %zu active member(s): --execute is refused until "
                 "it has none\n",
                 group.c_str(), state_name(g.state), g.members.size());
  }
  return ok();
}

}  // namespace

int group_list(const GroupArgs& args) {
  return finish(list(args));
}
int group_describe(const GroupArgs& args) {
  return finish(describe(args));
}
int group_delete(const GroupArgs& args) {
  return finish(remove(args));
}
int group_reset_offsets(const GroupArgs& args) {
  return finish(reset_offsets(args));
}

}  // namespace ordo::cli
