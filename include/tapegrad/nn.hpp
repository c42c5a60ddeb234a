// SPDX-License-Identifier: MIT
#pragma once

/// The layers of tapegrad (namespace tapegrad::nn): the Module base and every layer.

#include "tapegrad/nn/checkpointed.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/module.hpp"
