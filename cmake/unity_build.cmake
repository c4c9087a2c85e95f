# Unity builds: the sources of one module are compiled as one translation unit
# (CMake's UNITY_BUILD, GROUP mode). Most of the compile time of a file is the
# templates it instantiates from the shared headers (nlohmann/json, fmt,
# spdlog, Eigen, CLI11, Catch2) and optimizes again at -O3; a module's files
# instantiate mostly the same ones, so one translation unit per module does
# that work once. On CI's two cores this more than halves both builds (the
# precompiled headers, cmake/precompiled_headers.cmake, still spare each
# unit the parsing). The cost: the files of a module share one scope, so
# names in their anonymous namespaces must differ, and a file-scope `using`
# or #define reaches the files after it. KINTSUGI_UNITY=OFF compiles every
# file on its own (what an IDE or a single-file rebuild wants).
option(KINTSUGI_UNITY "Compile each module's sources as one translation unit" ON)

# kintsugi_unity(TARGET GROUP_REGEX REGEX [SEPARATE FILE ...]
#                [GROUPS NAME=MODULE,MODULE... ...]): a source whose path
# matches REGEX joins the unity group named by REGEX's first capture (the
# module), or the group NAME that lists that module under GROUPS; the others,
# and the files listed under SEPARATE, compile alone. Neighbouring modules
# instantiate mostly the same templates too, so a few groups of modules cost
# less than one unit per module (measured on the core at -O3: 135 s for three
# groups against 176 s for ten units); names in anonymous namespaces must then
# differ across the group's modules.
function(kintsugi_unity target)
  cmake_parse_arguments(ARG "" "GROUP_REGEX" "SEPARATE;GROUPS" ${ARGN})
  if(NOT KINTSUGI_UNITY)
    return()
  endif()
  set(separate)
  foreach(f IN LISTS ARG_SEPARATE)
    get_filename_component(f "${f}" ABSOLUTE)
    list(APPEND separate "${f}")
  endforeach()
  get_target_property(sources ${target} SOURCES)
  foreach(s IN LISTS sources)
    get_filename_component(path "${s}" ABSOLUTE)
    if(path IN_LIST separate OR NOT path MATCHES "${ARG_GROUP_REGEX}")
      continue()
    endif()
    set(group "${CMAKE_MATCH_1}")
    foreach(g IN LISTS ARG_GROUPS)
      string(REPLACE "=" ";" parts "${g}")
      list(GET parts 0 name)
      list(GET parts 1 modules)
      string(REPLACE "," ";" modules "${modules}")
      if(group IN_LIST modules)
        set(group "${name}")
        break()
      endif()
    endforeach()
    set_source_files_properties(${s} PROPERTIES UNITY_GROUP "${group}")
  endforeach()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
endfunction()
