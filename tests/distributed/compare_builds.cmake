# SPDX-License-Identifier: MIT
# Runs the training program built with MPI (under mpiexec, one rank) and the
# one built without, and fails unless the parameter files are identical.
#   -DMPI_COMMAND=<list> -DSERIAL_COMMAND=<program> -DWORK_DIR=<dir>
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(COMMAND ${MPI_COMMAND} "${WORK_DIR}/mpi.bin" RESULT_VARIABLE rc TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the MPI build failed: ${rc}")
endif()
execute_process(COMMAND ${SERIAL_COMMAND} "${WORK_DIR}/serial.bin" RESULT_VARIABLE rc TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the build without MPI failed: ${rc}")
endif()
file(SIZE "${WORK_DIR}/mpi.bin" size)
if(size EQUAL 0)
  message(FATAL_ERROR "the MPI build wrote no parameters")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${WORK_DIR}/mpi.bin" "${WORK_DIR}/serial.bin"
  RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  message(FATAL_ERROR "one rank under MPI and the build without MPI trained different parameters")
endif()
message(STATUS "identical: ${size} bytes of parameters")
