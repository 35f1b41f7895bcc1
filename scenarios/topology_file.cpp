// The topology file reader: protobuf text parsing with an error collector and a ParseInfoTree,
// then vertices, flat switches and links with each semantic error located in the file.
#include "scenarios/topology_file.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "scenarios/topology.pb.h"
#include "scenarios/units_parse.h"

namespace moesim {
namespace {

namespace pb = google::protobuf;
using ParseInfoTree = pb::TextFormat::ParseInfoTree;
using ParseLocation = pb::TextFormat::ParseLocation;

// Keeps the first syntax error; the parser stops there anyway.
class FirstErrorCollector final : public pb::io::ErrorCollector {
 public:
  explicit FirstErrorCollector(const std::string& source) : source_(source) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (first_.empty()) {
      first_ = source_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " +
               message;
    }
  }
  // A warning (e.g. a deprecated field) is not ignored either.
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    AddError(line, column, message);
  }
  const std::string& first() const { return first_; }

 private:
  const std::string& source_;
  std::string first_;
};

class Reader {
 public:
  Reader(const proto::TopologyFile& file, const ParseInfoTree& tree, const std::string& source)
      : file_(file), tree_(tree), source_(source) {}

  Topology read() {
    if (file_.has_gpu_forwarding()) topology_.set_gpu_forwarding(file_.gpu_forwarding());
    read_nodes();
    read_flat_switches();
    read_links();
    read_efficiency();
    read_gpus_per_node();
    try {
      topology_.validate();
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(source_ + ": " + e.what());
    }
    return std::move(topology_);
  }

 private:
  // An element of a repeated top-level field, and the location of one of its fields (or of the
  // element itself when that field is not in the file).
  struct Element {
    const char* list;
    int index;
  };

  const pb::FieldDescriptor* top_field(const char* name) const {
    return proto::TopologyFile::descriptor()->FindFieldByName(name);
  }

  ParseLocation locate(Element e, const char* field) const {
    const pb::FieldDescriptor* list = top_field(e.list);
    const ParseInfoTree* nested = tree_.GetTreeForNested(list, e.index);
    if (nested != nullptr && field != nullptr) {
      const pb::FieldDescriptor* fd = list->message_type()->FindFieldByName(field);
      const ParseLocation loc = nested->GetLocation(fd, -1);
      if (loc.line >= 0) return loc;
    }
    return tree_.GetLocation(list, e.index);
  }

  std::string at(ParseLocation loc) const {
    if (loc.line < 0) return source_;
    return source_ + ":" + std::to_string(loc.line + 1) + ":" + std::to_string(loc.column + 1);
  }

  static std::string label(Element e) {
    return std::string(e.list) + "[" + std::to_string(e.index) + "]";
  }

  [[noreturn]] void fail(Element e, const char* field, const std::string& message) const {
    throw std::invalid_argument(at(locate(e, field)) + ": " + label(e) + ": " + message);
  }

  [[noreturn]] void fail_top(const char* field, const std::string& message) const {
    throw std::invalid_argument(at(tree_.GetLocation(top_field(field), -1)) + ": " + field + ": " +
                                message);
  }

  void add_name(Element e, const char* field, const std::string& name, VertexKind kind) {
    if (name.empty()) fail(e, field, std::string(field) + " is required and must not be empty");
    const auto [it, inserted] = first_seen_.emplace(name, locate(e, field));
    if (!inserted) {
      fail(e, field, "duplicate name '" + name + "' (first at " + at(it->second) + ")");
    }
    topology_.add_vertex(kind, name);
  }

  Bandwidth bandwidth(Element e, const char* field, bool present, const std::string& text) const {
    if (!present)
      fail(e, field, std::string(field) + " is required, e.g. \"400Gbps\" or \"50GB/s\"");
    Bandwidth b;
    try {
      b = parse_bandwidth(text);
    } catch (const std::invalid_argument& error) {
      fail(e, field, std::string(field) + ": " + error.what());
    }
    if (!(b.bytes_per_second() > 0.0)) {
      fail(e, field, std::string(field) + " must be positive, got \"" + text + "\"");
    }
    return b;
  }

  Time latency(Element e, const char* field, bool present, const std::string& text) const {
    if (!present) fail(e, field, std::string(field) + " is required, e.g. \"300ns\"");
    try {
      return parse_time(text);
    } catch (const std::invalid_argument& error) {
      fail(e, field, std::string(field) + ": " + error.what());
    }
  }

  static LinkKind link_kind(proto::TopologyLink::Kind kind) {
    switch (kind) {
      case proto::TopologyLink::NVLINK:
        return LinkKind::kNvLink;
      case proto::TopologyLink::PCIE:
        return LinkKind::kPcie;
      default:
        return LinkKind::kNetwork;
    }
  }

  void read_nodes() {
    for (int i = 0; i < file_.node_size(); ++i) {
      const Element e{"node", i};
      const proto::TopologyNode& node = file_.node(i);
      if (!node.has_kind() || node.kind() == proto::TopologyNode::KIND_UNSPECIFIED) {
        fail(e, "kind", "kind is required: GPU, NVSWITCH, NIC or SWITCH");
      }
      VertexKind kind = VertexKind::kSwitch;
      switch (node.kind()) {
        case proto::TopologyNode::GPU:
          kind = VertexKind::kGpu;
          break;
        case proto::TopologyNode::NVSWITCH:
          kind = VertexKind::kNvSwitch;
          break;
        case proto::TopologyNode::NIC:
          kind = VertexKind::kNic;
          break;
        default:
          kind = VertexKind::kSwitch;
      }
      add_name(e, "name", node.name(), kind);
    }
  }

  void read_flat_switches() {
    for (int i = 0; i < file_.flat_switch_size(); ++i) {
      const Element e{"flat_switch", i};
      const proto::FlatSwitch& fs = file_.flat_switch(i);
      if (!fs.has_gpus() || fs.gpus() < 1 || fs.gpus() > kMaxClusterGpus) {
        fail(e, "gpus", "gpus is required and must be 1 to " + std::to_string(kMaxClusterGpus));
      }
      const Bandwidth bw = bandwidth(e, "bandwidth", fs.has_bandwidth(), fs.bandwidth());
      const Time lat = latency(e, "latency", fs.has_latency(), fs.latency());
      if (fs.has_link_kind() && fs.link_kind() == proto::TopologyLink::KIND_UNSPECIFIED) {
        fail(e, "link_kind", "link_kind must be NVLINK, PCIE or NETWORK");
      }
      const LinkKind kind = fs.has_link_kind() ? link_kind(fs.link_kind()) : LinkKind::kNetwork;
      VertexKind switch_kind = VertexKind::kSwitch;
      if (fs.has_switch_kind()) {
        if (fs.switch_kind() == proto::TopologyNode::NVSWITCH) {
          switch_kind = VertexKind::kNvSwitch;
        } else if (fs.switch_kind() != proto::TopologyNode::SWITCH) {
          fail(e, "switch_kind", "switch_kind must be SWITCH or NVSWITCH");
        }
      }
      if (topology_.gpu_count() + fs.gpus() > kMaxClusterGpus) {
        fail(e, "gpus",
             "the file's GPUs would exceed the " + std::to_string(kMaxClusterGpus) +
                 " GPUs moesim simulates");
      }
      add_name(e, "name", fs.name(), switch_kind);
      const VertexId hub{static_cast<uint32_t>(topology_.vertex_count() - 1)};
      const std::string prefix = fs.has_gpu_prefix() ? fs.gpu_prefix() : fs.name() + ".gpu";
      for (int g = 0; g < fs.gpus(); ++g) {
        add_name(e, fs.has_gpu_prefix() ? "gpu_prefix" : "name", prefix + std::to_string(g),
                 VertexKind::kGpu);
        const VertexId gpu{static_cast<uint32_t>(topology_.vertex_count() - 1)};
        topology_.add_duplex_link(gpu, hub, bw, lat, kind);
      }
    }
  }

  VertexId endpoint(Element e, const char* field, bool present, const std::string& name) const {
    if (!present || name.empty()) fail(e, field, std::string("endpoint ") + field + " is required");
    const auto v = topology_.find_vertex(name);
    if (!v) {
      fail(e, field,
           std::string("endpoint ") + field + " '" + name + "' is not the name of any node");
    }
    return *v;
  }

  void read_links() {
    for (int i = 0; i < file_.link_size(); ++i) {
      const Element e{"link", i};
      const proto::TopologyLink& l = file_.link(i);
      const VertexId a = endpoint(e, "a", l.has_a(), l.a());
      const VertexId b = endpoint(e, "b", l.has_b(), l.b());
      if (a == b) fail(e, "b", "a link needs two different endpoints, got '" + l.a() + "' twice");
      const Bandwidth bw = bandwidth(e, "bandwidth", l.has_bandwidth(), l.bandwidth());
      const Time lat = latency(e, "latency", l.has_latency(), l.latency());
      if (!l.has_kind() || l.kind() == proto::TopologyLink::KIND_UNSPECIFIED) {
        fail(e, "kind", "kind is required: NVLINK, PCIE or NETWORK");
      }
      topology_.add_duplex_link(a, b, bw, lat, link_kind(l.kind()));
    }
  }

  void read_efficiency() {
    if (!file_.has_efficiency()) return;
    const proto::LinkEfficiency& eff = file_.efficiency();
    const ParseInfoTree* nested = tree_.GetTreeForNested(top_field("efficiency"), -1);
    auto set = [&](const char* field, bool present, double value, LinkKind kind) {
      if (!present) return;
      if (!(value > 0.0 && value <= 1.0)) {
        ParseLocation loc;
        if (nested != nullptr) {
          loc =
              nested->GetLocation(proto::LinkEfficiency::descriptor()->FindFieldByName(field), -1);
        }
        throw std::invalid_argument(at(loc) + ": efficiency." + field +
                                    ": must be in (0, 1], got " + std::to_string(value));
      }
      topology_.set_efficiency(kind, value);
    };
    set("nvlink", eff.has_nvlink(), eff.nvlink(), LinkKind::kNvLink);
    set("pcie", eff.has_pcie(), eff.pcie(), LinkKind::kPcie);
    set("network", eff.has_network(), eff.network(), LinkKind::kNetwork);
  }

  void read_gpus_per_node() {
    if (!file_.has_gpus_per_node()) return;
    const int g = file_.gpus_per_node();
    if (g < 1) fail_top("gpus_per_node", "must be at least 1, got " + std::to_string(g));
    if (topology_.gpu_count() % g != 0) {
      fail_top("gpus_per_node", "must divide the " + std::to_string(topology_.gpu_count()) +
                                    " GPUs, got " + std::to_string(g));
    }
    topology_.set_gpus_per_node(g);
  }

  const proto::TopologyFile& file_;
  const ParseInfoTree& tree_;
  const std::string& source_;
  Topology topology_;
  std::unordered_map<std::string, ParseLocation> first_seen_;
};

}  // namespace

Topology parse_topology_text(std::string_view text, const std::string& source_name) {
  proto::TopologyFile file;
  ParseInfoTree tree;
  FirstErrorCollector errors(source_name);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &file)) {
    throw std::invalid_argument(errors.first().empty() ? source_name + ": cannot parse"
                                                       : errors.first());
  }
  return Reader(file, tree, source_name).read();
}

Topology load_topology_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path.string() + ": cannot open the topology file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::invalid_argument(path.string() + ": cannot read the topology file");
  return parse_topology_text(text.str(), path.string());
}

}  // namespace moesim
