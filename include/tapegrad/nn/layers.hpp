// SPDX-License-Identifier: MIT
#pragma once

/// Every layer: Linear, LayerNorm, Dropout, Embedding, PositionalEncoding,
/// MultiHeadAttention, FeedForward, TransformerBlock, Sequential, ModuleList.

#include "tapegrad/nn/attention.hpp"
#include "tapegrad/nn/containers.hpp"
#include "tapegrad/nn/dropout.hpp"
#include "tapegrad/nn/embedding.hpp"
#include "tapegrad/nn/layer_norm.hpp"
#include "tapegrad/nn/linear.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/transformer.hpp"
