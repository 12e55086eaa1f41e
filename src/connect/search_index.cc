#include "connect/search_index.h"

#include <xapian.h>

#include <charconv>

#include <nlohmann/json.hpp>

namespace ordo::connect {

using nlohmann::json;

namespace {

const std::string kOffsetMeta = "ordo.offset.";

std::string source_term(const model::TopicPartition& tp) {
  return "P" + tp.topic + ":" + std::to_string(tp.partition);
}

// The text to index of a value: the configured string fields (every string field when none
// is configured), a non-object value as it is.
std::string text_of(const std::string& value, const std::vector<std::string>& fields) {
  json j = json::parse(value, nullptr, false);
  if (!j.is_object()) return value;
  std::string out;
  auto add = [&](const json& v) {
    if (v.is_string()) {
      out += v.get<std::string>();
      out += '\n';
    }
  };
  if (fields.empty()) {
    for (const auto& [k, v] : j.items()) add(v);
  } else {
    for (const auto& f : fields) {
      if (auto it = j.find(f); it != j.end()) add(*it);
    }
  }
  return out;
}

template <typename F>
auto guarded(std::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Xapian::QueryParserError& e) {
    return make_error(Errc::invalid_argument, "{}: {}", what, e.get_msg());
  } catch (const Xapian::DatabaseCorruptError& e) {
    return make_error(Errc::corrupt, "{}: {}", what, e.get_msg());
  } catch (const Xapian::Error& e) {
    return make_error(Errc::io, "{}: {}: {}", what, e.get_type(), e.get_msg());
  }
}

}  // namespace

SearchIndex::SearchIndex(std::string path, std::vector<std::string> fields,
                         std::unique_ptr<Xapian::WritableDatabase> db)
    : path_(std::move(path)), fields_(std::move(fields)), db_(std::move(db)) {}

SearchIndex::~SearchIndex() {
  if (db_) {
    try {
      db_->close();
    } catch (const Xapian::Error&) {
    }
  }
}

Result<std::unique_ptr<SearchIndex>> SearchIndex::open(const std::string& path,
                                                       std::vector<std::string> fields) {
  return guarded("open search index " + path, [&]() -> Result<std::unique_ptr<SearchIndex>> {
    auto db = std::make_unique<Xapian::WritableDatabase>(path, Xapian::DB_CREATE_OR_OPEN);
    return std::unique_ptr<SearchIndex>(new SearchIndex(path, std::move(fields), std::move(db)));
  });
}

Result<std::optional<int64_t>> SearchIndex::position(const model::TopicPartition& tp) {
  return guarded("search index position", [&]() -> Result<std::optional<int64_t>> {
    std::string v = db_->get_metadata(kOffsetMeta + tp.topic + ":" + std::to_string(tp.partition));
    if (v.empty()) return std::optional<int64_t>();
    int64_t next = -1;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), next);
    if (ec != std::errc() || p != v.data() + v.size() || next < 0) {
      return make_error(Errc::corrupt, "search index: position '{}' of {}", v, tp.to_string());
    }
    return std::optional<int64_t>(next);
  });
}

Result<void> SearchIndex::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                                int64_t next_offset) {
  for (const auto& c : changes) {
    if (!c.truncate && c.key.size() > kMaxKeyBytes) {
      return make_error(Errc::invalid_argument, "search index: a key of {} bytes (at most {})",
                        c.key.size(), kMaxKeyBytes);
    }
  }
  auto r = guarded("search index apply", [&]() -> Result<void> {
    // One transaction: the documents and the position are committed together or not at all.
    db_->begin_transaction(true);
    Xapian::TermGenerator tg;
    tg.set_stemmer(Xapian::Stem("english"));
    for (const auto& c : changes) {
      if (c.truncate) {
        db_->delete_document(source_term(tp));
        continue;
      }
      const std::string id = "Q" + c.key;
      if (!c.value) {
        db_->delete_document(id);
        continue;
      }
      Xapian::Document doc;
      doc.set_data(*c.value);
      doc.add_boolean_term(id);
      doc.add_boolean_term(source_term(tp));
      tg.set_document(doc);
      tg.index_text(text_of(*c.value, fields_));
      db_->replace_document(id, doc);
    }
    db_->set_metadata(kOffsetMeta + tp.topic + ":" + std::to_string(tp.partition),
                      std::to_string(next_offset));
    db_->commit_transaction();
    return ok();
  });
  if (!r) {
    try {
      db_->cancel_transaction();
    } catch (const Xapian::Error&) {
      // not in a transaction: it failed before or at begin_transaction
    }
  }
  return r;
}

Result<std::vector<SearchHit>> SearchIndex::search(const std::string& query, size_t limit) const {
  return guarded("search", [&]() -> Result<std::vector<SearchHit>> {
    Xapian::Database db(path_);
    Xapian::QueryParser qp;
    Xapian::Stem stem("english");
    qp.set_stemmer(stem);
    qp.set_database(db);
    qp.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
    Xapian::Query q = qp.parse_query(
        query, Xapian::QueryParser::FLAG_DEFAULT | Xapian::QueryParser::FLAG_WILDCARD);
    Xapian::Enquire enquire(db);
    enquire.set_query(q);
    Xapian::MSet mset = enquire.get_mset(0, Xapian::doccount(limit));
    std::vector<SearchHit> hits;
    for (auto it = mset.begin(); it != mset.end(); ++it) {
      Xapian::Document doc = it.get_document();
      SearchHit h;
      for (auto t = doc.termlist_begin(); t != doc.termlist_end(); ++t) {
        std::string term = *t;
        if (term.starts_with("Q")) {
          h.key = term.substr(1);
          break;
        }
      }
      h.value = doc.get_data();
      h.snippet =
          mset.snippet(text_of(h.value, fields_), 200, stem,
                       Xapian::MSet::SNIPPET_BACKGROUND_MODEL | Xapian::MSet::SNIPPET_EXHAUSTIVE,
                       "<b>", "</b>", "...");
      h.percent = it.get_percent();
      h.rank = int(it.get_rank());
      hits.push_back(std::move(h));
    }
    return hits;
  });
}

Result<int64_t> SearchIndex::documents() const {
  return guarded("search", [&]() -> Result<int64_t> {
    return int64_t(Xapian::Database(path_).get_doccount());
  });
}

}  // namespace ordo::connect
