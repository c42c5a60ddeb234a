// SPDX-License-Identifier: MIT
#pragma once

// A core header that reaches up into nn: the layering check must refuse it.
#include "tapegrad/nn/module.hpp"
