# stepflow_add_module(<name> SOURCES ... PUBLIC_DEPS ... PRIVATE_DEPS ...)
# Creates library stepflow_<name> (alias stepflow::<name>) whose public include
# root is the layer folder, so headers are included as "stepflow/<layer>/x.hpp".
function(stepflow_add_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(stepflow_${name} ${M_SOURCES})
  add_library(stepflow::${name} ALIAS stepflow_${name})
  target_include_directories(stepflow_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(stepflow_${name} PUBLIC ${M_PUBLIC_DEPS}
                        PRIVATE ${M_PRIVATE_DEPS} stepflow_internal)
endfunction()

# stepflow_add_test(<layer> <file.cpp> LIBS ...): one executable per test file,
# doctest cases discovered as CTest tests named "<layer>.<unit>: <case>".
function(stepflow_add_test layer file)
  cmake_parse_arguments(T "" "" "LIBS" ${ARGN})
  get_filename_component(unit ${file} NAME_WE)
  string(REGEX REPLACE "_test$" "" unit ${unit})
  set(exe test_${layer}_${unit})
  add_executable(${exe} ${file})
  target_link_libraries(${exe} PRIVATE stepflow_test_main ${T_LIBS} stepflow_internal)
  # One variable only: doctest_discover_tests flattens list-valued properties.
  # The source dir reaches tests as a compile definition of the support lib.
  doctest_discover_tests(${exe} TEST_PREFIX "${layer}.${unit}: "
    PROPERTIES ENVIRONMENT "STEPFLOW_BINARY=$<TARGET_FILE:stepflow>")
endfunction()
