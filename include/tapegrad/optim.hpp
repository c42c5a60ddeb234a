// SPDX-License-Identifier: MIT
#pragma once

/// The optimizers of tapegrad (namespace tapegrad::optim): SGD, Adam, AdamW,
/// learning-rate schedules and gradient clipping.

#include "tapegrad/optim/adam.hpp"
#include "tapegrad/optim/clip.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/optim/schedule.hpp"
#include "tapegrad/optim/sgd.hpp"
