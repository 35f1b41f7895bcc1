# moesim_library(NAME DIR [DEPS ...]): a library from the .cpp files directly in DIR, or an
# INTERFACE library while DIR has only headers. Headers are included from the project root.
function(moesim_library name dir)
  file(GLOB sources CONFIGURE_DEPENDS ${dir}/*.cpp)
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${MOESIM_ROOT} ${CMAKE_BINARY_DIR})
    target_link_libraries(${name} PUBLIC ${ARGN})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${MOESIM_ROOT} ${CMAKE_BINARY_DIR})
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()
