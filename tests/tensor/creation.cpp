// SPDX-License-Identifier: MIT
// Making tensors: filled leaves, ranges, tensors from lists, vectors and Eigen
// objects, and the seeded random initialisers whose numbers must be the same
// on every machine.

#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tapegrad/tensor/creation.hpp"
#include "testing.hpp"

using namespace tapegrad;

TEST_CASE("filled leaves: zeros, ones, full") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.is_leaf());
  CHECK_FALSE(z.requires_grad());
  CHECK(z.data().sum() == 0.0f);

  SUBCASE("ones, and a parameter that wants gradients") {
    Tensor o = ones({4}, /*requires_grad=*/true);
    CHECK(o.requires_grad());
    CHECK(o.data().sum() == 4.0f);
  }
  SUBCASE("full, in double") {
    basic_tensor<double> f = full<double>({2, 2}, 2.5);
    CHECK(f.to_vector() == std::vector<double>{2.5, 2.5, 2.5, 2.5});
  }
  SUBCASE("a rank-0 tensor holds one number") {
    Tensor s = full({}, 7.0);
    CHECK(s.rank() == 0);
    CHECK(s.item() == 7.0f);
  }
}

TEST_CASE("arange counts as NumPy does") {
  CHECK(arange(4).to_vector() == std::vector<float>{0, 1, 2, 3});
  CHECK(arange(0.0, 1.0, 0.25).to_vector() == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  CHECK(arange(3.0, 0.0, -1.0).to_vector() == std::vector<float>{3, 2, 1});
  CHECK(arange(2.0, 2.0).numel() == 0);
  CHECK(arange(3, 5).to_vector() == std::vector<float>{3, 4});
  CHECK_THROWS_AS(arange(0.0, 1.0, 0.0), value_error);
}

TEST_CASE("from: lists, vectors and Eigen objects") {
  SUBCASE("a flat list is rank 1, nested lists are rows") {
    Tensor v = from({1, 2, 3});
    CHECK(v.shape() == Shape{3});
    Tensor m = from({{1, 2, 3}, {4, 5, 6}});
    CHECK(m.shape() == Shape{2, 3});
    CHECK(m.at({1, 0}) == 4.0f);
    Tensor col = from({{1}, {2}});  // one value per row: a column
    CHECK(col.shape() == Shape{2, 1});
  }
  SUBCASE("rows of different lengths are an error naming the row") {
    CHECK_THROWS_WITH_AS(from({{1, 2}, {3}}), "from: row 1 has 1 values, row 0 has 2", shape_error);
  }
  SUBCASE("a flat vector and a shape") {
    auto t = from(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2}, true);
    CHECK(t.at({2, 1}) == 6.0);
    CHECK(t.requires_grad());
    CHECK_THROWS_AS(from(std::vector<double>{1, 2, 3}, {2, 2}), shape_error);
  }
  SUBCASE("any Eigen storage order lands row by row") {
    Eigen::MatrixXf cm(2, 3);  // column-major
    cm << 1, 2, 3, 4, 5, 6;
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm = cm;
    const std::vector<float> expect{1, 2, 3, 4, 5, 6};
    CHECK(from(cm).to_vector() == expect);
    CHECK(from(rm).to_vector() == expect);
    CHECK(from(cm.array()).to_vector() == expect);
    CHECK(from(Eigen::Map<Eigen::MatrixXf>(cm.data(), 2, 3)).to_vector() == expect);
    CHECK(from(cm.transpose()).shape() == Shape{3, 2});
    CHECK(from(cm.transpose()).at({2, 1}) == 6.0f);
  }
  SUBCASE("an Eigen column vector is rank 1, and keeps its scalar type") {
    Eigen::VectorXd v(3);
    v << 1, 2, 3;
    basic_tensor<double> t = from(v);
    CHECK(t.shape() == Shape{3});
    CHECK(t.at({2}) == 3.0);
  }
}

TEST_CASE("Generator: the same seed gives the same numbers everywhere") {
  SUBCASE("the engine is the standard's mt19937_64: its 10000th draw from seed 5489 is fixed") {
    Generator g(5489);
    std::uint64_t v = 0;
    for (int i = 0; i < 10000; ++i) v = g.next();
    CHECK(v == 9981545732273789042ULL);
  }
  SUBCASE("uniform and normal draws from seed 42 (regression values of the documented algorithm)") {
    Generator g(42);
    CHECK(g.uniform() == 0.75515553295453897);  // exact: 53 bits of one draw
    CHECK(g.uniform() == 0.63903139385469743);
    g.uniform();
    // Box-Muller on the next two uniforms, then its second value.
    CHECK(g.normal() == doctest::Approx(0.44435599535113213).epsilon(1e-12));
    CHECK(g.normal() == doctest::Approx(-0.30910205675785418).epsilon(1e-12));
  }
  SUBCASE("reseeding restarts the sequence") {
    Generator a(7), b(7);
    Tensor x = normal({5}, a), y = normal({5}, b);
    CHECK(x.to_vector() == y.to_vector());
    a.seed(7);
    CHECK(normal({5}, a).to_vector() == x.to_vector());
  }
}

TEST_CASE("random initialisers have the promised ranges and spreads") {
  Generator g(2024);

  SUBCASE("normal(mean 1, std 2): sample mean and std within 3% of 20000 draws") {
    Tensor x = normal({20000}, g, 1.0, 2.0);
    const double m = x.data().cast<double>().mean();
    const double sd = std::sqrt((x.data().cast<double>() - m).square().mean());
    CHECK(m == doctest::Approx(1.0).epsilon(0.03));
    CHECK(sd == doctest::Approx(2.0).epsilon(0.03));
  }
  SUBCASE("uniform(-3, 5) stays in range with mean near 1") {
    Tensor x = uniform({20000}, g, -3.0, 5.0);
    CHECK(x.data().minCoeff() >= -3.0f);
    CHECK(x.data().maxCoeff() < 5.0f);
    CHECK(x.data().cast<double>().mean() == doctest::Approx(1.0).epsilon(0.05));
  }
  SUBCASE("fans of a [in, out] weight: fan_in = shape[0]") {
    CHECK(compute_fans({64, 20}).in == 64);
    CHECK(compute_fans({64, 20}).out == 20);
    // Leading dimensions multiply both fans (the receptive field).
    CHECK(compute_fans({3, 64, 20}).in == 192);
    CHECK(compute_fans({3, 64, 20}).out == 60);
    CHECK_THROWS_AS(compute_fans({20}), value_error);
  }
  SUBCASE("xavier_uniform [64, 20]: bound sqrt(6 / 84) = 0.2673") {
    Tensor w = xavier_uniform({64, 20}, g);
    const float b = std::sqrt(6.0f / 84.0f);
    CHECK(w.data().abs().maxCoeff() <= b);
    CHECK(w.data().abs().maxCoeff() > 0.95f * b);  // 1280 draws reach close to the edge
  }
  SUBCASE("xavier_normal [200, 300]: std sqrt(2 / 500) = 0.0632") {
    Tensor w = xavier_normal({200, 300}, g);
    const double sd = std::sqrt(w.data().cast<double>().square().mean());
    CHECK(sd == doctest::Approx(std::sqrt(2.0 / 500.0)).epsilon(0.03));
  }
  SUBCASE("kaiming_uniform with a = sqrt(5) (PyTorch's Linear): bound 1/sqrt(fan_in) = 1/8") {
    Tensor w = kaiming_uniform({64, 20}, g, std::sqrt(5.0));
    CHECK(w.data().abs().maxCoeff() <= 0.125f);
    CHECK(w.data().abs().maxCoeff() > 0.95f * 0.125f);
  }
  SUBCASE("kaiming_normal, ReLU gain: std sqrt(2 / fan_in) = 0.0625 for fan_in 512") {
    Tensor w = kaiming_normal({512, 100}, g);
    const double sd = std::sqrt(w.data().cast<double>().square().mean());
    CHECK(sd == doctest::Approx(0.0625).epsilon(0.03));
    // Scaling by fan_out instead: sqrt(2 / 100).
    Tensor v = kaiming_normal({512, 100}, g, 0.0, FanMode::fan_out);
    CHECK(std::sqrt(v.data().cast<double>().square().mean()) == doctest::Approx(std::sqrt(0.02)).epsilon(0.03));
  }
}
