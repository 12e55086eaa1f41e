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
}

TEST(Pipeline, DefaultsAndNoHttp) {
  auto p = parse_pipeline("[worker]\nhttp = \"\"\n[[sink]]\nname = \"a\"\ntype = \"table\"\n"
                          "topics = [\"t\"]\n",
                          "p.toml");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->bootstrap, "127.0.0.1:9092");
  EXPECT_EQ(p->group, "ordo-connect");
  EXPECT_TRUE(p->http_host.empty());
}

TEST(Pipeline, ErrorsNameTheProblem) {
  const std::string sink = "[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\n";
  for (const auto& [text, expect] : std::vector<std::pair<std::string, std::string>>{
           {"", "no [[sink]]"},
           {"[worker\n", "line 1"},
           {"[worker]\nbootstrapp = \"x\"\n" + sink, "unknown key worker.bootstrapp"},
           {"[worker]\nhttp = \"nohost\"\n" + sink, "worker.http 'nohost'"},
           {"[worker]\nhttp = \"h:70000\"\n" + sink, "worker.http 'h:70000'"},
           {"[worker]\ngroup = 5\n" + sink, "worker.group must be a string"},
           {"[worker]\nid = \"a/b\"\n" + sink, "worker.id 'a/b'"},
           {sink + sink, "two sinks are named 'a'"},
           {"[[sink]]\nname = \"a b\"\ntype = \"table\"\ntopics = [\"t\"]\n", "sink name 'a b'"},
           {"[[sink]]\nname = \"a\"\ntype = \"redis\"\ntopics = [\"t\"]\n", "unknown type 'redis'"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = []\n", "topics must be a non-empty"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"a/b\"]\n", "valid topic names"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\n", "topics must be"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\nextra = 1\n",
            "unknown key sink.extra"},
           {"sink = 3\n", "array of tables"},
           {"[[sink]]\nname = \"a\"\ntype = \"table\"\ntopics = [\"t\"]\n"
            "dead_letter_topic = \"t\"\n",
            "reads its own dead_letter_topic"},
           {"other = 1\n", "unknown key .other"},
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
