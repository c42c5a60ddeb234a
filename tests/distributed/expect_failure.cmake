# SPDX-License-Identifier: MIT
# Runs COMMAND and passes only if it ends (within 60 seconds) with a non-zero
# exit code and its output contains EXPECT.
#   -DCOMMAND=<list> -DEXPECT=<text>
execute_process(COMMAND ${COMMAND}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
message(STATUS "exit: ${rc}\n${out}${err}")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job hung: ${rc}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited with 0")
endif()
string(FIND "${out}${err}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the output does not contain '${EXPECT}'")
endif()
