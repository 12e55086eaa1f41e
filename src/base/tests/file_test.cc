#include "base/file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace ordo {
namespace {

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ordo-file-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FileTest, WriteReadExactAndShort) {
  auto f = File::open(dir_ + "/a", O_RDWR | O_CREAT);
  ASSERT_TRUE(f) << f.error().to_string();
  std::string data = "hello world";
  ASSERT_TRUE(f->pwrite_all({reinterpret_cast<const uint8_t*>(data.data()), data.size()}, 0));
  EXPECT_EQ(*f->size(), 11);
  uint8_t buf[20];
  ASSERT_TRUE(f->pread_exact({buf, 5}, 6));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 5), "world");
  auto r = f->pread_exact({buf, 20}, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::out_of_range);
  EXPECT_EQ(*f->pread_some({buf, 20}, 3), 8u);
  ASSERT_TRUE(f->truncate(4));
  EXPECT_EQ(*f->size(), 4);
  ASSERT_TRUE(f->datasync());
}

TEST_F(FileTest, OpenMissingIsNotFound) {
  auto f = File::open(dir_ + "/missing", O_RDONLY);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, Errc::not_found);
}

TEST_F(FileTest, AtomicReplace) {
  std::string p = dir_ + "/cfg";
  ASSERT_TRUE(write_file_atomic(p, std::string_view("one")));
  ASSERT_TRUE(write_file_atomic(p, std::string_view("two two")));
  auto s = read_file(p, 100);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, "two two");
  EXPECT_FALSE(file_exists(p + ".tmp"));
  auto big = read_file(p, 3);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
}

}  // namespace
}  // namespace ordo
