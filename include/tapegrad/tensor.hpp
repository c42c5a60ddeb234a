// SPDX-License-Identifier: MIT
#pragma once

/// The tensor half of tapegrad: `Tensor`, its creation functions and every
/// op family, gradient checks and graph printing for tensors.

#include "tapegrad/autodiff/custom_op.hpp"
#include "tapegrad/autodiff/tensor_gradcheck.hpp"
#include "tapegrad/autodiff/tensor_graph.hpp"
#include "tapegrad/tensor/activations.hpp"
#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/forward.hpp"
#include "tapegrad/tensor/indexing.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/losses.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "tapegrad/tensor/shape.hpp"
#include "tapegrad/tensor/shape_ops.hpp"
#include "tapegrad/tensor/tensor.hpp"
