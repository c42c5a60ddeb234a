// SPDX-License-Identifier: MIT
#pragma once

/// The layers of tapegrad (namespace tapegrad::nn): the Module base and every
/// layer, one header each (nn/linear.hpp, nn/layer_norm.hpp, nn/dropout.hpp,
/// nn/embedding.hpp, nn/attention.hpp, nn/transformer.hpp, nn/containers.hpp).

#include "tapegrad/nn/attention.hpp"
#include "tapegrad/nn/checkpointed.hpp"
#include "tapegrad/nn/containers.hpp"
#include "tapegrad/nn/dropout.hpp"
#include "tapegrad/nn/embedding.hpp"
#include "tapegrad/nn/layer_norm.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/linear.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/transformer.hpp"
