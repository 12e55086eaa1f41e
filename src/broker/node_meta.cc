#include "broker/node_meta.h"

#include <filesystem>
#include <random>

#include "base/assert.h"
#include "base/crc32c.h"
#include "base/file.h"

namespace ordo::broker {
namespace {

constexpr uint8_t kMagic[4] = {'O', 'R', 'D', 'N'};
constexpr uint16_t kVersion = 1;
constexpr size_t kFixed = 4 + 2 + 4 + 8 + 2;
constexpr size_t kMaxClusterId = 255;

void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(uint8_t(v >> (8 * i)));
}

uint64_t get_be(std::span<const uint8_t> in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | in[at + size_t(i)];
  return v;
}

}  // namespace

std::vector<uint8_t> encode_node_meta(const NodeMeta& meta) {
  ORDO_ASSERT(meta.cluster_id.size() <= kMaxClusterId);
  std::vector<uint8_t> out(std::begin(kMagic), std::end(kMagic));
  put_be(out, kVersion, 2);
  put_be(out, uint32_t(meta.node_id), 4);
  put_be(out, meta.incarnation, 8);
  put_be(out, meta.cluster_id.size(), 2);
  out.insert(out.end(), meta.cluster_id.begin(), meta.cluster_id.end());
  put_be(out, crc32c(0, out.data(), out.size()), 4);
  return out;
}

Result<NodeMeta> decode_node_meta(std::span<const uint8_t> in) {
  if (in.size() < kFixed + 4) return make_error(Errc::corrupt, "node.meta: {} bytes", in.size());
  if (!std::equal(std::begin(kMagic), std::end(kMagic), in.begin())) {
    return make_error(Errc::corrupt, "node.meta: bad magic");
  }
  if (get_be(in, 4, 2) != kVersion) {
    return make_error(Errc::corrupt, "node.meta: version {}", get_be(in, 4, 2));
  }
  size_t n = get_be(in, 18, 2);
  if (n > kMaxClusterId || in.size() != kFixed + n + 4) {
    return make_error(Errc::corrupt, "node.meta: length {} against {} bytes", n, in.size());
  }
  uint32_t crc = uint32_t(get_be(in, kFixed + n, 4));
  if (crc != crc32c(0, in.data(), kFixed + n)) return make_error(Errc::corrupt, "node.meta: CRC");
  NodeMeta m;
  m.node_id = int32_t(uint32_t(get_be(in, 6, 4)));
  m.incarnation = get_be(in, 10, 8);
  m.cluster_id.assign(reinterpret_cast<const char*>(in.data() + kFixed), n);
  if (m.incarnation == 0 || m.node_id < 0) {
    return make_error(Errc::corrupt, "node.meta: node {} incarnation {}", m.node_id, m.incarnation);
  }
  return m;
}

Result<NodeMeta> load_or_create_node_meta(const std::string& data_dir, int32_t node_id,
                                          const std::string& cluster_id) {
  if (cluster_id.size() > kMaxClusterId) {
    return make_error(Errc::invalid_argument, "cluster.id: longer than {} bytes", kMaxClusterId);
  }
  std::string path = data_dir + "/" + std::string(kNodeMetaFileName);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto text = ORDO_TRY(read_file(path, 4096));
    auto m =
        decode_node_meta(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!m) return make_error(m.error().code, "{}: {}", path, m.error().message);
    if (m->node_id != node_id || m->cluster_id != cluster_id) {
      return make_error(Errc::invalid_argument,
                        "{} belongs to node {} of cluster '{}', not node {} of '{}'", path,
                        m->node_id, m->cluster_id, node_id, cluster_id);
    }
    return m;
  }
  NodeMeta m;
  m.node_id = node_id;
  m.cluster_id = cluster_id;
  std::random_device rd;
  while (m.incarnation == 0) m.incarnation = (uint64_t(rd()) << 32) | rd();
  ORDO_TRY(write_file_atomic(path, encode_node_meta(m)));
  m.created = true;
  return m;
}

}  // namespace ordo::broker
