// SPDX-License-Identifier: MIT
#pragma once

/// Data-parallel training across processes on MPI (namespace
/// tapegrad::distributed). Optional: link tapegrad::distributed, which exists
/// only where CMake found MPI. Not included by tapegrad/tapegrad.hpp.

#include "tapegrad/distributed/data_parallel.hpp"
#include "tapegrad/distributed/environment.hpp"
#include "tapegrad/distributed/sharding.hpp"
