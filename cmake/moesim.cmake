# moesim_library(NAME DIR [SOURCES files...] [PUBLIC libs...] [PRIVATE libs...]): a library from
# the .cpp files directly in DIR, or from SOURCES where DIR also holds programs (an INTERFACE
# library while there are no sources), linking exactly the libraries
# listed: PUBLIC where its headers include theirs, PRIVATE where only its sources do. Headers are
# included from the project root. Each library and its links are recorded, so that the layering
# check (cmake/check_layers.cmake, run by CTest as `layers/includes`) can hold every #include to
# them: a file may include only its own library's headers and those of libraries it links.
function(moesim_library name dir)
  cmake_parse_arguments(arg "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "moesim_library(${name}): say PUBLIC or PRIVATE before ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(arg_SOURCES)
    set(sources ${arg_SOURCES})
  else()
    file(GLOB sources CONFIGURE_DEPENDS ${dir}/*.cpp)
  endif()
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${MOESIM_ROOT} ${CMAKE_BINARY_DIR})
    target_link_libraries(${name} PUBLIC ${arg_PUBLIC} PRIVATE ${arg_PRIVATE})
  else()
    if(arg_PRIVATE)
      message(FATAL_ERROR "moesim_library(${name}): a header-only library has no PRIVATE links")
    endif()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${MOESIM_ROOT} ${CMAKE_BINARY_DIR})
    target_link_libraries(${name} INTERFACE ${arg_PUBLIC})
  endif()
  file(RELATIVE_PATH rel ${MOESIM_ROOT} ${dir})
  string(JOIN " " links ${arg_PUBLIC} ${arg_PRIVATE})
  set_property(GLOBAL APPEND PROPERTY MOESIM_LAYER_LINES "${name} ${rel} ${links}")
endfunction()

# moesim_proto_library(NAME DIR): C++ code generated from the .proto files in DIR, as a static
# library; a schema in models/trace/x.proto is included as "models/trace/x.pb.h". Recorded for
# the layering check like moesim_library.
function(moesim_proto_library name dir)
  file(GLOB protos CONFIGURE_DEPENDS ${dir}/*.proto)
  file(RELATIVE_PATH rel ${MOESIM_ROOT} ${dir})
  set(generated "")
  foreach(proto ${protos})
    get_filename_component(stem ${proto} NAME_WE)
    set(out_cc ${CMAKE_BINARY_DIR}/${rel}/${stem}.pb.cc)
    set(out_h ${CMAKE_BINARY_DIR}/${rel}/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${out_cc} ${out_h}
      COMMAND protobuf::protoc --proto_path=${MOESIM_ROOT} --cpp_out=${CMAKE_BINARY_DIR} ${proto}
      DEPENDS ${proto} protobuf::protoc
      COMMENT "protoc ${rel}/${stem}.proto")
    list(APPEND generated ${out_cc})
  endforeach()
  add_library(${name} STATIC ${generated})
  target_include_directories(${name} SYSTEM PUBLIC ${CMAKE_BINARY_DIR} ${Protobuf_INCLUDE_DIRS})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf)
  # Generated code is not ours to fix.
  target_compile_options(${name} PRIVATE -w)
  set_property(GLOBAL APPEND PROPERTY MOESIM_LAYER_PROTOS "${name} ${rel}")
endfunction()

# Writes the recorded libraries to FILE, one line each: `lib NAME DIR LINKS...` or
# `proto NAME DIR`; external libraries (Boost::..., moesim_blas) are among the links.
function(moesim_write_layers file)
  get_property(lines GLOBAL PROPERTY MOESIM_LAYER_LINES)
  get_property(protos GLOBAL PROPERTY MOESIM_LAYER_PROTOS)
  set(text "")
  foreach(l ${lines})
    string(APPEND text "lib ${l}\n")
  endforeach()
  foreach(p ${protos})
    string(APPEND text "proto ${p}\n")
  endforeach()
  file(WRITE ${file} "${text}")
endfunction()
