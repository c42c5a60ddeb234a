// SPDX-License-Identifier: MIT
#pragma once

// Two small SVG pictures for the examples: a line chart (loss curves) and a
// heat map (attention weights, one panel per head). Plain text output, no
// dependencies; open the files in any browser. Not part of the library.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "csv.hpp"

namespace tapegrad_examples {

namespace svg_detail {

/// Text made safe for XML.
inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// A number in at most `digits` significant digits ("0.25", "1e-03").
inline std::string num(double x, int digits = 4) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", digits, x);
  return buf;
}

/// Tick positions at "nice" steps (1, 2 or 5 times a power of ten) from the
/// last tick at or below `lo` to the first at or above `hi`.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  std::vector<double> ticks;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
  const double first = std::floor(lo / step + 1e-9);
  for (int k = 0; k < 100; ++k) {
    const double t = (first + k) * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;
  }
  return ticks;
}

/// A colour between white (t = 0) and deep blue (t = 1).
inline std::string blues(double t) {
  t = std::clamp(t, 0.0, 1.0);
  auto mix = [t](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", mix(247, 8), mix(251, 48), mix(255, 107));
  return buf;
}

}  // namespace svg_detail

/// One curve of a LineChart.
struct Series {
  std::string name{};       ///< shown in the legend
  std::vector<double> x{};  ///< x values, increasing
  std::vector<double> y{};  ///< y values; NaN leaves a point out
  std::string color{};      ///< any SVG colour; empty picks from a palette
  bool markers = false;     ///< draw a dot on every point (for sparse series)
};

/// A line chart with axes, ticks, axis labels and a legend.
///
/// Example:
///   LineChart chart{.title = "loss", .x_label = "step", .y_label = "cross-entropy", .log_y = true};
///   chart.series.push_back({.name = "training", .x = steps, .y = losses});
///   chart.save("loss.svg");
struct LineChart {
  std::string title{};           ///< above the plot
  std::string x_label{};         ///< under the x axis
  std::string y_label{};         ///< beside the y axis
  std::vector<Series> series{};  ///< the curves, drawn in order
  bool log_y = false;            ///< logarithmic y axis (losses spanning decades)
  int width = 760;               ///< pixels
  int height = 440;              ///< pixels

  /// The picture as SVG text.
  std::string svg() const {
    using namespace svg_detail;
    const double left = 72, right = 200, top = 44, bottom = 58;
    const double pw = width - left - right, ph = height - top - bottom;

    // Data ranges over every finite point (positive ones on a log axis).
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    for (const Series& s : series)
      for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (log_y && s.y[i] <= 0)) continue;
        x0 = std::min(x0, s.x[i]);
        x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, s.y[i]);
        y1 = std::max(y1, s.y[i]);
      }
    if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = log_y ? 0.1 : 0, y1 = 1;
    if (x1 <= x0) x1 = x0 + 1;
    std::vector<double> yticks;
    if (log_y) {
      y0 = std::pow(10.0, std::floor(std::log10(y0)));
      y1 = std::pow(10.0, std::ceil(std::log10(y1)));
      if (y1 <= y0) y1 = y0 * 10;
      for (double t = y0; t <= y1 * 1.0001; t *= 10) yticks.push_back(t);
    } else {
      if (y0 > 0 && y0 < 0.5 * y1) y0 = 0;  // start at zero when the data nearly does
      if (y1 <= y0) y1 = y0 + 1;
      yticks = nice_ticks(y0, y1);
      y0 = std::min(y0, yticks.front());
      y1 = std::max(y1, yticks.back());
    }
    const std::vector<double> xticks = nice_ticks(x0, x1);
    auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
    auto py = [&](double y) {
      const double f =
          log_y ? (std::log10(y) - std::log10(y0)) / (std::log10(y1) - std::log10(y0)) : (y - y0) / (y1 - y0);
      return top + (1 - f) * ph;
    };

    std::ostringstream os;
    os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
       << "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
       << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
       << "<text x=\"" << left + pw / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape(title)
       << "</text>\n";
    // Grid and ticks.
    for (double t : yticks) {
      if (t < y0 || t > y1) continue;
      os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << py(t) << "\" y2=\"" << py(t)
         << "\" stroke=\"#e4e4e4\"/>\n<text x=\"" << left - 6 << "\" y=\"" << py(t) + 4 << "\" text-anchor=\"end\">"
         << num(t) << "</text>\n";
    }
    for (double t : xticks) {
      if (t < x0 || t > x1) continue;
      os << "<line x1=\"" << px(t) << "\" x2=\"" << px(t) << "\" y1=\"" << top << "\" y2=\"" << top + ph
         << "\" stroke=\"#e4e4e4\"/>\n<text x=\"" << px(t) << "\" y=\"" << top + ph + 16 << "\" text-anchor=\"middle\">"
         << num(t, 6) << "</text>\n";
    }
    os << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
       << "\" fill=\"none\" stroke=\"#444\"/>\n"
       << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 14 << "\" text-anchor=\"middle\">" << escape(x_label)
       << "</text>\n"
       << "<text transform=\"translate(18," << top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
       << escape(y_label) << (log_y ? " (log scale)" : "") << "</text>\n";
    // Curves and legend.
    static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
    for (std::size_t k = 0; k < series.size(); ++k) {
      const Series& s = series[k];
      const std::string color = s.color.empty() ? palette[k % 6] : s.color;
      std::ostringstream path;
      bool pen_down = false;
      for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (log_y && s.y[i] <= 0)) {
          pen_down = false;
          continue;
        }
        path << (pen_down ? " L" : " M") << num(px(s.x[i]), 6) << "," << num(py(s.y[i]), 6);
        pen_down = true;
        if (s.markers)
          os << "<circle cx=\"" << px(s.x[i]) << "\" cy=\"" << py(s.y[i]) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
      }
      os << "<path d=\"" << path.str() << "\" fill=\"none\" stroke=\"" << color
         << "\" stroke-width=\"1.6\" stroke-linejoin=\"round\"/>\n";
      const double ly = top + 14 + 20.0 * static_cast<double>(k);
      os << "<line x1=\"" << left + pw + 14 << "\" x2=\"" << left + pw + 38 << "\" y1=\"" << ly << "\" y2=\"" << ly
         << "\" stroke=\"" << color << "\" stroke-width=\"2.5\"/>\n<text x=\"" << left + pw + 44 << "\" y=\"" << ly + 4
         << "\">" << escape(s.name) << "</text>\n";
    }
    os << "</svg>\n";
    return os.str();
  }

  /// Writes svg() to `path`.
  void save(const std::filesystem::path& path) const { write_text_file(path, svg()); }
};

/// One matrix of a Heatmap: `rows` x `cols` values in row-major order.
struct HeatmapPanel {
  std::string title{};           ///< above the panel ("head 1")
  int rows = 0;                  ///< number of rows (queries)
  int cols = 0;                  ///< number of columns (keys)
  std::vector<double> values{};  ///< rows * cols values, expected in [lo, hi]
};

/// Heat maps side by side with shared axis labels: attention weights with one
/// panel per head, tokens along both axes, the weight written in each cell.
///
/// Example:
///   Heatmap map{.title = "attention, Max(1,6,2)", .row_labels = tokens, .col_labels = tokens};
///   map.panels.push_back({.title = "head 1", .rows = 8, .cols = 8, .values = weights});
///   map.save("attention.svg");
struct Heatmap {
  std::string title{};                    ///< over all panels
  std::vector<std::string> row_labels{};  ///< one per row, left of each panel
  std::vector<std::string> col_labels{};  ///< one per column, above each panel
  std::string row_axis = "query";         ///< what the rows are
  std::string col_axis = "key";           ///< what the columns are
  std::vector<HeatmapPanel> panels{};     ///< drawn left to right, `per_row` to a line
  int per_row = 4;                        ///< panels per line
  int cell = 30;                          ///< cell size in pixels
  double lo = 0.0;                        ///< value drawn white
  double hi = 1.0;                        ///< value drawn deepest blue

  /// The picture as SVG text.
  std::string svg() const {
    using namespace svg_detail;
    int rows = 0, cols = 0;
    for (const HeatmapPanel& p : panels) rows = std::max(rows, p.rows), cols = std::max(cols, p.cols);
    // Room for the labels: about 6.5 pixels per character at font size 11.
    std::size_t longest_row = 0, longest_col = 0;
    for (const auto& l : row_labels) longest_row = std::max(longest_row, l.size());
    for (const auto& l : col_labels) longest_col = std::max(longest_col, l.size());
    const bool slanted = 6.5 * static_cast<double>(longest_col) > cell - 2;  // tilt long column labels
    const int label_w = std::max(56, static_cast<int>(6.5 * static_cast<double>(longest_row)) + 26);
    const int label_h = slanted ? 24 + static_cast<int>(4.6 * static_cast<double>(longest_col)) : 34;
    const int gap = 36, title_h = 24;
    const int panel_w = label_w + cols * cell, panel_h = title_h + label_h + rows * cell;
    const int n = static_cast<int>(panels.size());
    const int across = std::max(1, std::min(per_row, n)), down = std::max(1, (n + per_row - 1) / per_row);
    const int top = 40, legend_h = 50;
    const int width = 16 + across * (panel_w + gap), height = top + down * (panel_h + gap) + legend_h;

    std::ostringstream os;
    os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
       << "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
       << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
       << "<text x=\"16\" y=\"24\" font-size=\"15\">" << escape(title) << "</text>\n";
    for (int k = 0; k < n; ++k) {
      const HeatmapPanel& p = panels[static_cast<std::size_t>(k)];
      const int ox = 16 + (k % across) * (panel_w + gap), oy = top + (k / across) * (panel_h + gap);
      const int gx = ox + label_w, gy = oy + title_h + label_h;
      os << "<text x=\"" << gx + p.cols * cell / 2 << "\" y=\"" << oy + 14
         << "\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" << escape(p.title) << "</text>\n"
         << "<text x=\"" << gx + p.cols * cell / 2 << "\" y=\"" << oy + title_h + 8
         << "\" text-anchor=\"middle\" fill=\"#666\">" << escape(col_axis) << " &#8594;</text>\n";
      for (int c = 0; c < p.cols && c < static_cast<int>(col_labels.size()); ++c) {
        const int x = gx + c * cell + cell / 2, y = gy - 6;
        if (slanted)
          os << "<text transform=\"translate(" << x << "," << y << ") rotate(-45)\">";
        else
          os << "<text x=\"" << x << "\" y=\"" << y << "\" text-anchor=\"middle\">";
        os << escape(col_labels[static_cast<std::size_t>(c)]) << "</text>\n";
      }
      for (int r = 0; r < p.rows && r < static_cast<int>(row_labels.size()); ++r)
        os << "<text x=\"" << gx - 6 << "\" y=\"" << gy + r * cell + cell / 2 + 4 << "\" text-anchor=\"end\">"
           << escape(row_labels[static_cast<std::size_t>(r)]) << "</text>\n";
      for (int r = 0; r < p.rows; ++r)
        for (int c = 0; c < p.cols; ++c) {
          const auto i = static_cast<std::size_t>(r * p.cols + c);
          const double v = i < p.values.size() ? p.values[i] : std::numeric_limits<double>::quiet_NaN();
          const double t = hi > lo ? (v - lo) / (hi - lo) : 0.0;
          os << "<rect x=\"" << gx + c * cell << "\" y=\"" << gy + r * cell << "\" width=\"" << cell << "\" height=\""
             << cell << "\" fill=\"" << (std::isfinite(v) ? blues(t) : "#ccc") << "\" stroke=\"white\"><title>"
             << escape(p.title) << ": "
             << escape(r < static_cast<int>(row_labels.size()) ? row_labels[static_cast<std::size_t>(r)] : "")
             << " &#8594; "
             << escape(c < static_cast<int>(col_labels.size()) ? col_labels[static_cast<std::size_t>(c)] : "") << " = "
             << num(v, 3) << "</title></rect>\n";
          if (cell >= 24 && std::isfinite(v))
            os << "<text x=\"" << gx + c * cell + cell / 2 << "\" y=\"" << gy + r * cell + cell / 2 + 3
               << "\" text-anchor=\"middle\" font-size=\"9\" fill=\"" << (t > 0.55 ? "white" : "#333") << "\">"
               << cell_text(v) << "</text>\n";
        }
      os << "<text transform=\"translate(" << ox + 8 << "," << gy + p.rows * cell / 2
         << ") rotate(-90)\" text-anchor=\"middle\" fill=\"#666\">" << escape(row_axis) << "</text>\n";
    }
    // Colour scale.
    const int ly = height - legend_h + 14, lw = 200;
    os << "<defs><linearGradient id=\"scale\">";
    for (int i = 0; i <= 4; ++i) os << "<stop offset=\"" << i * 25 << "%\" stop-color=\"" << blues(i / 4.0) << "\"/>";
    os << "</linearGradient></defs>\n<rect x=\"72\" y=\"" << ly << "\" width=\"" << lw
       << "\" height=\"12\" fill=\"url(#scale)\" stroke=\"#999\"/>\n<text x=\"66\" y=\"" << ly + 10
       << "\" text-anchor=\"end\">" << num(lo) << "</text>\n<text x=\"" << 72 + lw + 6 << "\" y=\"" << ly + 10 << "\">"
       << num(hi) << "</text>\n</svg>\n";
    return os.str();
  }

  /// Writes svg() to `path`.
  void save(const std::filesystem::path& path) const { write_text_file(path, svg()); }

 private:
  // ".42" for weights in [0, 1); other values in short form.
  static std::string cell_text(double v) {
    if (v >= 0 && v < 0.995) {
      char buf[8];
      std::snprintf(buf, sizeof buf, ".%02d", static_cast<int>(std::lround(v * 100)));
      return buf;
    }
    return svg_detail::num(v, 2);
  }
};

}  // namespace tapegrad_examples
