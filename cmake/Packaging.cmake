# `cmake --install` and `cpack -G DEB`: the `ringmoe` command, the public C++ API (headers, static libraries,
# a CMake package giving ringmoe::runtime, and ringmoe.pc for pkg-config) and the licence.
# Included from the top CMakeLists.txt once every target exists.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The libraries behind ringmoe::runtime, in link order (each before what it uses). ringmoe_frontend and
# ringmoe_probe serve only the CLI and the benchmarks, so they are not installed.
set(RINGMOE_INSTALLED_LIBRARIES ringmoe_engine ringmoe_tokenizer ringmoe_planner ringmoe_cpu ringmoe_gpu ringmoe_io)
foreach(library ${RINGMOE_INSTALLED_LIBRARIES} ringmoe_runtime)
  string(REPLACE "ringmoe_" "" export_name ${library})
  set_target_properties(${library} PROPERTIES EXPORT_NAME ${export_name})  # ringmoe::engine, ringmoe::io, ...
endforeach()

install(TARGETS ringmoe RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${RINGMOE_INSTALLED_LIBRARIES} ringmoe_runtime EXPORT ringmoeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})

# The public headers and every project header they include, at their paths in the source tree, so that
# "ringmoe/engine.h" and "planner/execution_plan.h" resolve from <prefix>/include as they do here. The install
# test compiles a program against the installed copy, so a header missing from this list fails it.
install(FILES runtime/include/ringmoe/engine.h runtime/include/ringmoe/tokenizer.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ringmoe)
install(FILES planner/execution_plan.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/planner)
install(FILES io/dtype.h io/model_spec.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/io)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

# find_package(ringmoe CONFIG): the static libraries' own dependencies come from ringmoeConfig.cmake.
set(RINGMOE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ringmoe)
install(EXPORT ringmoeTargets NAMESPACE ringmoe:: DESTINATION ${RINGMOE_CMAKE_DIR})
configure_package_config_file(cmake/ringmoeConfig.cmake.in ${CMAKE_BINARY_DIR}/ringmoeConfig.cmake
                              INSTALL_DESTINATION ${RINGMOE_CMAKE_DIR})
# 0.x: a new minor version may break the API, so only the same major.minor matches.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/ringmoeConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/ringmoeConfig.cmake ${CMAKE_BINARY_DIR}/ringmoeConfigVersion.cmake
        DESTINATION ${RINGMOE_CMAKE_DIR})

# ringmoe.pc. Every library is static, so what they link is always needed by the program that links them: the
# packages go in Requires and Libs, not the .private fields that `pkg-config --libs` leaves out without --static.
# The prefix is found from the .pc file's own place (pkg-config's ${pcfiledir}), so
# `cmake --install --prefix DIR` and the .deb's /usr both work with one file.
file(RELATIVE_PATH RINGMOE_PC_PREFIX_FROM_PCDIR /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)  # "../.."
string(REGEX REPLACE "/$" "" RINGMOE_PC_PREFIX_FROM_PCDIR ${RINGMOE_PC_PREFIX_FROM_PCDIR})
list(TRANSFORM RINGMOE_INSTALLED_LIBRARIES PREPEND -l OUTPUT_VARIABLE RINGMOE_PC_LIBS)
list(JOIN RINGMOE_PC_LIBS " " RINGMOE_PC_LIBS)
# oneDNN ships no .pc file; OpenMP and threads are compiler flags.
string(APPEND RINGMOE_PC_LIBS " -ldnnl -fopenmp -pthread")
if(RINGMOE_HAVE_CUDA)
  string(APPEND RINGMOE_PC_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -lcudart -lcublas")
endif()
configure_file(cmake/ringmoe.pc.in ${CMAKE_BINARY_DIR}/ringmoe.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/ringmoe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# `cpack -G DEB` in the build folder. Depends lists the Debian 12 packages of the shared libraries the `ringmoe`
# binary needs (objdump -p build/ringmoe | grep NEEDED, each mapped with dpkg -S). A build with CUDA also needs
# the CUDA toolkit's libcudart and libcublas, which /usr/local/cuda provides and no Debian package does: build
# with -DRINGMOE_CUDA=OFF for a package whose dependencies all come from Debian.
set(RINGMOE_PACKAGE_MAINTAINER "ringmoe maintainers <maintainers@users.noreply.r-seed-e2ec9ae9.example>"
    CACHE STRING "The Maintainer line of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ringmoe)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Batch inference of Mixture-of-Experts language models, GPU offload")
set(CPACK_RESOURCE_FILE_LICENSE ${RINGMOE_ROOT}/LICENSE)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${RINGMOE_PACKAGE_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libabsl20220623, libc6, libdnnl2, libfmt9, libgcc-s1, libgomp1, libhwloc15, libpcre2-8-0, \
libsimdjson14, libspdlog1.10, libstdc++6, libtbb12, liburing2, libutf8proc2, zlib1g")
include(CPack)
