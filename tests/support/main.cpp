// SPDX-License-Identifier: MIT
// doctest's main(), built once into tapegrad_test_main and shared by every
// test executable.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
