// SPDX-License-Identifier: MIT
#pragma once

/// The scalar half of tapegrad: `Value`, its math, the functional API,
/// record-once replay, gradcheck and graph printing. Needs no Eigen.

#include "tapegrad/autodiff/functional.hpp"
#include "tapegrad/autodiff/gradcheck.hpp"
#include "tapegrad/autodiff/recording.hpp"
#include "tapegrad/autodiff/scalar_graph.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/scalar/math.hpp"
#include "tapegrad/scalar/value.hpp"
#include "tapegrad/version.hpp"
