// SPDX-License-Identifier: MIT
#pragma once

/// The one header a user needs: everything but the optional parts.

#include "tapegrad/scalar.hpp"
