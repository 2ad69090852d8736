# The API reference of the public C++ headers, with Doxygen (Debian's doxygen, which .ci/install-deps installs):
# the target api_docs writes build/docs/api/html, and the ctest test api_docs (label cpu) fails on any Doxygen
# warning, so the headers' /// comments stay well-formed. Without doxygen neither exists.
find_program(RINGMOE_DOXYGEN doxygen)
if(RINGMOE_DOXYGEN)
  set(RINGMOE_API_DOCS_DIR ${CMAKE_BINARY_DIR}/docs/api)
  configure_file(${RINGMOE_ROOT}/cmake/Doxyfile.in ${CMAKE_BINARY_DIR}/Doxyfile @ONLY)
  file(MAKE_DIRECTORY ${RINGMOE_API_DOCS_DIR})  # doxygen creates only the last level of OUTPUT_DIRECTORY
  add_custom_target(api_docs COMMAND ${CMAKE_COMMAND} -E make_directory ${RINGMOE_API_DOCS_DIR}
                    COMMAND ${RINGMOE_DOXYGEN} ${CMAKE_BINARY_DIR}/Doxyfile
                    COMMENT "Doxygen: the public C++ API in ${RINGMOE_API_DOCS_DIR}/html" VERBATIM)
  if(RINGMOE_TESTS)
    add_test(NAME api_docs COMMAND ${RINGMOE_DOXYGEN} ${CMAKE_BINARY_DIR}/Doxyfile)
    set_tests_properties(api_docs PROPERTIES LABELS cpu TIMEOUT 120)
  endif()
endif()
message(STATUS "ringmoe: API reference (doxygen) ${RINGMOE_DOXYGEN}")
