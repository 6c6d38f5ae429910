# Driven by tests/install/CMakeLists.txt (cmake -P). Inputs: BUILD_DIR,
# SCRATCH, CONSUMER_SOURCE, LIBDIR, INCLUDEDIR, GENERATOR, CXX_COMPILER,
# BUILD_TYPE, SANITIZE (may be empty).
cmake_minimum_required(VERSION 3.20)

foreach(var BUILD_DIR SCRATCH CONSUMER_SOURCE LIBDIR INCLUDEDIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "install_test.cmake: ${var} is not set")
  endif()
endforeach()

set(prefix ${SCRATCH}/prefix)
set(consumer_build ${SCRATCH}/consumer-build)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install_package: ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# (a) a fresh install of this build tree
file(REMOVE_RECURSE ${SCRATCH})
file(MAKE_DIRECTORY ${SCRATCH})
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(f ${LIBDIR}/cmake/chipmesh/chipmeshConfig.cmake
          ${LIBDIR}/cmake/chipmesh/chipmeshConfigVersion.cmake
          ${LIBDIR}/libchipmesh_platform_sim.so
          ${INCLUDEDIR}/chipmesh/chipmesh.h)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install_package: ${prefix}/${f} was not installed")
  endif()
endforeach()

# (b) an outside project against the prefix, found through CMAKE_PREFIX_PATH
set(configure_args
  -S ${CONSUMER_SOURCE} -B ${consumer_build} -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(BUILD_TYPE)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${BUILD_TYPE})
endif()
if(SANITIZE)
  # An instrumented libchipmesh needs the sanitizer runtime loaded first.
  list(APPEND configure_args
    "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE} -fno-omit-frame-pointer"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
unset(ENV{chipmesh_DIR})
unset(ENV{CMAKE_PREFIX_PATH})
run_step("configuring the consumer" ${CMAKE_COMMAND} ${configure_args})
run_step("building the consumer" ${CMAKE_COMMAND} --build ${consumer_build})

file(REAL_PATH ${prefix} real_prefix)
file(REAL_PATH ${prefix}/${LIBDIR} real_libdir)

# The package itself must have come from the prefix.
file(STRINGS ${consumer_build}/CMakeCache.txt dir_line REGEX "^chipmesh_DIR:")
string(REGEX REPLACE "^chipmesh_DIR:[A-Z]+=" "" found_dir "${dir_line}")
file(REAL_PATH "${found_dir}" found_dir)
if(NOT found_dir STREQUAL "${real_libdir}/cmake/chipmesh")
  message(FATAL_ERROR "install_package: find_package(chipmesh) used '${found_dir}', "
                      "expected ${real_libdir}/cmake/chipmesh")
endif()

# (c) run it with nothing pointing at the build tree: the plugin must be the
# one installed next to libchipmesh in the prefix.
unset(ENV{CHIPMESH_PLATFORM_PATH})
unset(ENV{LD_LIBRARY_PATH})
run_step("running the consumer" ${consumer_build}/chipmesh_consumer)
message("${step_output}")

foreach(what libchipmesh platform)
  if(NOT step_output MATCHES "${what}: ([^\n]*)\n")
    message(FATAL_ERROR "install_package: the consumer did not report '${what}:'")
  endif()
  file(REAL_PATH "${CMAKE_MATCH_1}" loaded)
  get_filename_component(loaded_dir "${loaded}" DIRECTORY)
  if(NOT loaded_dir STREQUAL real_libdir)
    message(FATAL_ERROR "install_package: ${what} was loaded from ${loaded}, "
                        "not from the install prefix (${real_libdir})")
  endif()
endforeach()
if(NOT step_output MATCHES "\nOK\n")
  message(FATAL_ERROR "install_package: the consumer did not print OK")
endif()

file(REMOVE_RECURSE ${SCRATCH})
message("install_package: OK")
