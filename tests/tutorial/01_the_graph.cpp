// SPDX-License-Identifier: MIT
//
// Chapter 1: the graph behind a number.
//
// We build the smallest interesting graph, x * y + 1, look at what the tape
// recorded for every node (its data, its children and the local gradients
// taken on the forward pass), and then let backward() walk it.

#include <doctest/doctest.h>

#include <string>

#include "tapegrad/scalar.hpp"

using tapegrad::Value;

TEST_CASE("tutorial 1: x * y + 1, node by node") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);  // record on a tape of our own

  // Two leaves: the inputs. A Value made from a number is a leaf.
  Value x = 2.0, y = 3.0;
  x.label("x");
  y.label("y");

  // Each operation whose result we name appends one node to the tape (an
  // unnamed expression is one node: see the second test case).
  Value z = x * y;
  z.label("z");
  Value one = 1.0;  // a leaf too, so it shows up as a child below
  one.label("one");
  Value loss = z + one;
  loss.label("loss");

  REQUIRE(z.data() == 6.0);
  REQUIRE(loss.data() == 7.0);

  SUBCASE("leaves have no children") {
    CHECK(x.is_leaf());
    CHECK(x.children().empty());
    CHECK(x.local_grads().empty());
  }

  SUBCASE("mul records both inputs and the product rule: [y, x] = [3, 2]") {
    CHECK(z.op() == "mul");
    const auto kids = z.children();
    REQUIRE(kids.size() == 2);
    CHECK(kids[0].label() == "x");
    CHECK(kids[1].label() == "y");
    const auto local = z.local_grads();
    CHECK(local[0] == 3.0);  // d(x*y)/dx = y
    CHECK(local[1] == 2.0);  // d(x*y)/dy = x
  }

  SUBCASE("add passes gradients through unchanged: [1, 1]") {
    CHECK(loss.op() == "add");
    const auto kids = loss.children();
    REQUIRE(kids.size() == 2);
    CHECK(kids[0].label() == "z");
    CHECK(kids[1].label() == "one");
    CHECK(loss.local_grads() == std::vector<double>{1.0, 1.0});
  }

  SUBCASE("backward() multiplies local gradients along each path") {
    loss.backward();
    // d loss / dx = d loss/dz * dz/dx = 1 * 3
    CHECK(x.grad() == 3.0);
    // d loss / dy = 1 * 2
    CHECK(y.grad() == 2.0);
    CHECK(z.grad() == 1.0);
    CHECK(loss.grad() == 1.0);
  }

  SUBCASE("the printed tape is the table of the graph") {
    // One row per node in recording order, leaves first.
    const std::string expected =
        "node  data  children  local grads\n"
        "x     2     []        []\n"
        "y     3     []        []\n"
        "one   1     []        []\n"
        "z     6     [x, y]    [3, 2]\n"
        "loss  7     [z, one]  [1, 1]\n";
    CHECK(tapegrad::tape_table(loss) == expected);
  }

  SUBCASE("a plain number is folded into its node as a constant") {
    // z + 1.0 with a double records one edge, not a leaf for the 1: cheaper,
    // and the constant needs no gradient.
    Value loss2 = z + 1.0;
    CHECK(loss2.data() == 7.0);
    CHECK(loss2.children().size() == 1);
    CHECK(loss2.local_grads() == std::vector<double>{1.0});
  }

  SUBCASE("the same graph as a Graphviz drawing") {
    loss.backward();
    const std::string dot = tapegrad::to_dot(loss);
    CHECK(dot.find("digraph") == 0);
    CHECK(dot.find("x\\ndata 2 | grad 3") != std::string::npos);
    CHECK(dot.find("label=\"3\"") != std::string::npos);  // the edge x -> z carries dz/dx = 3
  }
}

TEST_CASE("tutorial 1: an unnamed expression is one statement") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value x = 2.0, y = 3.0;
  x.label("x");
  y.label("y");
  Value one = 1.0;
  one.label("one");

  // Above, z = x * y was named, so it was a node of its own. Written as one
  // expression, the product is a temporary: the add extends its node instead
  // of recording a new one, and the chain rule is applied right away:
  //   d loss/dx = d(x*y)/dx * d(p + one)/dp = y * 1 = 3
  //   d loss/dy = x * 1 = 2,   d loss/d one = 1
  Value loss = x * y + one;
  loss.label("loss");
  CHECK(tape.size() == 1);
  CHECK(loss.op() == "add");  // a statement is named by its outermost operation
  const std::string expected =
      "node  data  children     local grads\n"
      "x     2     []           []\n"
      "y     3     []           []\n"
      "one   1     []           []\n"
      "loss  7     [x, y, one]  [3, 2, 1]\n";
  CHECK(tapegrad::tape_table(loss) == expected);

  loss.backward();  // the same gradients as the two-node graph above
  CHECK(x.grad() == 3.0);
  CHECK(y.grad() == 2.0);
  CHECK(one.grad() == 1.0);
}
