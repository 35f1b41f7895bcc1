// Reads a generic cluster topology from a protobuf text file (schema: scenarios/topology.proto)
// into a validated Topology, with file:line:column in every error.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "topologies/topology.h"

namespace moesim {

// Throws std::invalid_argument "<file>:<line>:<column>: <what was expected>" for syntax errors
// (from the protobuf parser), missing or bad fields, duplicate names, dangling link endpoints
// (naming the link index and the missing name) and bad unit strings; "<file>: ..." naming the
// GPUs for an unreachable GPU. Lines and columns are 1-based.
Topology load_topology_file(const std::filesystem::path& path);

// The same from text already in memory; `source_name` stands for the file in messages.
Topology parse_topology_text(std::string_view text, const std::string& source_name);

}  // namespace moesim
