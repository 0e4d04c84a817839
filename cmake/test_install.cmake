# The install_and_example test: cmake --install the build into a temporary prefix, build
# examples/s2s_turn.cpp as a separate project against the installed package (find_package(voxrt)),
# and run it on the tiny checkpoint. Also runs the installed voxrt command.
#   cmake -DBUILD_DIR=<build> -DSRC=<repo root> [-DGENERATOR=Ninja] [-DCXX=c++] [-DCUDA_ROOT=dir]
#         -P test_install.cmake
cmake_policy(VERSION 3.25)
string(RANDOM LENGTH 8 tag)
set(tmp "${BUILD_DIR}/install-test-${tag}")
set(prefix "${tmp}/prefix")
file(REMOVE_RECURSE "${tmp}")
file(MAKE_DIRECTORY "${tmp}/project")

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_out "${out}" PARENT_SCOPE)
  set(last_err "${err}" PARENT_SCOPE)
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/voxrt/voxrt.h include/voxrt/session.h bin/voxrt)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "the install has no ${f}")
  endif()
endforeach()
file(GLOB_RECURSE config "${prefix}/*/voxrtConfig.cmake")
if(NOT config)
  message(FATAL_ERROR "the install has no voxrtConfig.cmake")
endif()
# Only the public headers are installed.
file(GLOB_RECURSE headers RELATIVE "${prefix}/include" "${prefix}/include/*")
foreach(h ${headers})
  if(NOT h MATCHES "^voxrt/")
    message(FATAL_ERROR "installed header outside include/voxrt: ${h}")
  endif()
endforeach()

file(WRITE "${tmp}/project/CMakeLists.txt" "
cmake_minimum_required(VERSION 3.25)
project(voxrt_example LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(voxrt 0.1 REQUIRED)
add_executable(s2s_turn \"${SRC}/examples/s2s_turn.cpp\")
target_link_libraries(s2s_turn PRIVATE voxrt::voxrt)
")
set(gen_args "")
if(GENERATOR)
  set(gen_args -G "${GENERATOR}")
endif()
set(cxx_args "")
if(CXX)
  set(cxx_args "-DCMAKE_CXX_COMPILER=${CXX}")
endif()
if(CUDA_ROOT)  # a CUDA build: the package finds the toolkit it was built with
  list(APPEND cxx_args "-DCUDAToolkit_ROOT=${CUDA_ROOT}")
endif()
run("configuring the example against the installed package" ${CMAKE_COMMAND}
    -S "${tmp}/project" -B "${tmp}/project/build" ${gen_args} ${cxx_args}
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}")
run("building the example" ${CMAKE_COMMAND} --build "${tmp}/project/build")

set(out_wav "${tmp}/answer.wav")
run("running the example" "${tmp}/project/build/s2s_turn" "${SRC}/tests/data/tiny/model"
    "${SRC}/tests/data/audio/question.wav" "${out_wav}" 40)
if(NOT last_err MATCHES "after 40 steps")
  message(FATAL_ERROR "the example did not run 40 steps:\n${last_err}")
endif()
file(SIZE "${out_wav}" bytes)
if(bytes LESS 1000)
  message(FATAL_ERROR "the example wrote ${bytes} bytes of audio")
endif()
run("the installed voxrt" "${prefix}/bin/voxrt" chat --device cpu -q -n 4 -m
    "${SRC}/tests/data/tiny/model" --text hello)
message(STATUS "installed, built the example against it, ran both (${bytes} bytes of audio)")
file(REMOVE_RECURSE "${tmp}")
