# SPDX-License-Identifier: MIT
#
# Checks the headers under INCLUDE_DIR/tapegrad against two rules:
#   - a header includes only its own layer and the layers below it, in the
#     order core, scalar, tensor, autodiff, nn, optim, io, distributed (the
#     umbrella headers directly under tapegrad/ are exempt);
#   - a header has at most MAX_LINES lines.
# Every violation is printed; the script fails when there is one.
#
#   cmake -DINCLUDE_DIR=<dir> [-DMAX_LINES=500] -P tapegradCheckLayers.cmake

if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "tapegradCheckLayers: pass -DINCLUDE_DIR=<the folder that holds tapegrad/>")
endif()
if(NOT MAX_LINES)
  set(MAX_LINES 500)
endif()

get_filename_component(INCLUDE_DIR "${INCLUDE_DIR}" ABSOLUTE)
set(layers core scalar tensor autodiff nn optim io distributed)

# The rank of the layer a path under tapegrad/ belongs to ("tensor/op.hpp",
# "tensor.hpp" for an umbrella), or -1 when it belongs to none.
function(layer_rank path out)
  string(REGEX REPLACE "^([^/.]+).*$" "\\1" first "${path}")
  list(FIND layers "${first}" rank)
  if(rank EQUAL -1 AND first STREQUAL "version")
    set(rank 0)
  endif()
  set(${out} ${rank} PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE headers "${INCLUDE_DIR}/tapegrad/*.hpp")
set(problems 0)
foreach(header IN LISTS headers)
  file(RELATIVE_PATH rel "${INCLUDE_DIR}/tapegrad" "${header}")
  file(READ "${header}" text)

  string(REGEX MATCHALL "\n" newlines "${text}")
  list(LENGTH newlines count)
  if(count GREATER MAX_LINES)
    message("tapegrad/${rel}: ${count} lines, over the budget of ${MAX_LINES}")
    math(EXPR problems "${problems} + 1")
  endif()

  if(NOT rel MATCHES "/")
    continue()  # an umbrella header
  endif()
  layer_rank("${rel}" own)
  if(own EQUAL -1)
    message("tapegrad/${rel}: lies in no layer (folders: ${layers})")
    math(EXPR problems "${problems} + 1")
    continue()
  endif()
  string(REGEX MATCHALL "#include [<\"]tapegrad/[^>\"]+[>\"]" includes "${text}")
  foreach(inc IN LISTS includes)
    string(REGEX REPLACE "#include [<\"]tapegrad/([^>\"]+)[>\"]" "\\1" target "${inc}")
    layer_rank("${target}" theirs)
    if(theirs GREATER own OR theirs EQUAL -1)
      list(GET layers ${own} own_name)
      message("tapegrad/${rel} (layer ${own_name}) includes tapegrad/${target}, which is not in its layer or below")
      math(EXPR problems "${problems} + 1")
    endif()
  endforeach()
endforeach()

if(problems GREATER 0)
  message(FATAL_ERROR "${problems} layering or size problem(s) in ${INCLUDE_DIR}/tapegrad")
endif()
list(LENGTH headers n)
message(STATUS "${n} headers: every include points to its own layer or below; none over ${MAX_LINES} lines")
