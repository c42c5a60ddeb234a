// SPDX-License-Identifier: MIT
#pragma once

/// Checkpoints of modules and optimizer state (namespace tapegrad::io).

#include "tapegrad/io/checkpoint.hpp"
