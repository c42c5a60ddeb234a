// SPDX-License-Identifier: MIT
#pragma once

/// The one header a user needs: everything but the optional parts.

#include "tapegrad/autodiff/checkpoint.hpp"
#include "tapegrad/autodiff/custom_op.hpp"
#include "tapegrad/autodiff/higher_order.hpp"
#include "tapegrad/autodiff/per_sample.hpp"
#include "tapegrad/autodiff/routing.hpp"
#include "tapegrad/autodiff/tensor_graph.hpp"
#include "tapegrad/autodiff/tensor_higher_order.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/scalar.hpp"
#include "tapegrad/tensor.hpp"
