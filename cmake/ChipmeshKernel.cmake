# chipmesh_add_kernel_library(<name> <sources>...)
#
# Builds a chipmesh kernel library: a shared library of functions defined with
# CHIPMESH_KERNEL(name) { ... } (chipmesh/kernel.h), which chip processes load
# with dlopen and call through the kernel ABI. The library is compiled as
# C++20 with hidden visibility, so only the CHIPMESH_KERNEL entry points are
# exported, and gets the chipmesh headers from chipmesh::chipmesh. The device
# helpers are header-only: a kernel library needs nothing of libchipmesh at
# run time, and none of it is linked in beyond the usage requirements.
#
#   find_package(chipmesh REQUIRED)
#   chipmesh_add_kernel_library(my_kernels my_kernels.cpp)
#
# Produces lib<name>.so; use the target like any other (install(TARGETS ...),
# target_link_libraries for extra dependencies, ...).
include_guard(GLOBAL)

function(chipmesh_add_kernel_library name)
  if(ARGC LESS 2)
    message(FATAL_ERROR "chipmesh_add_kernel_library(${name}): no sources given")
  endif()
  if(NOT TARGET chipmesh::chipmesh)
    message(FATAL_ERROR "chipmesh_add_kernel_library(${name}): target chipmesh::chipmesh is not defined "
                        "(call find_package(chipmesh) first)")
  endif()
  add_library(${name} SHARED ${ARGN})
  target_compile_features(${name} PRIVATE cxx_std_20)
  set_target_properties(${name} PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  # Headers (and C++20) only: kernels must not depend on libchipmesh at run time.
  target_include_directories(${name} PRIVATE
    $<TARGET_PROPERTY:chipmesh::chipmesh,INTERFACE_INCLUDE_DIRECTORIES>)
endfunction()
