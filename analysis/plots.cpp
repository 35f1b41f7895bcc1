#include "analysis/plots.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/statistics.h"

namespace moesim {
namespace {

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void make_pipe(Fd& read_end, Fd& write_end, const std::string& program) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw ReportError("cannot start " + program + ": pipe: " + std::strerror(errno));
  }
  read_end.fd = fds[0];
  write_end.fd = fds[1];
}

// Reads both outputs until both close, so a chatty child never blocks on a full pipe.
void drain(Fd& out, Fd& err, std::string& out_text, std::string& err_text) {
  char buffer[4096];
  while (out.fd >= 0 || err.fd >= 0) {
    pollfd fds[2] = {{out.fd, POLLIN, 0}, {err.fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw ReportError(std::string("poll: ") + std::strerror(errno));
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      Fd& fd = i == 0 ? out : err;
      const ssize_t n = ::read(fd.fd, buffer, sizeof buffer);
      if (n > 0) {
        (i == 0 ? out_text : err_text).append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fd.reset();
      }
    }
  }
}

bool valid_stem(const std::string& stem) {
  return !stem.empty() && stem.find("..") == std::string::npos &&
         std::all_of(stem.begin(), stem.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
         });
}

std::string csv_cell(const std::string& cell) {
  if (cell.find_first_of(",\"\n\r") == std::string::npos) return cell;
  std::string out = "\"";
  for (char c : cell) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string color_spec(const std::string& hex) {
  return "lc rgb " + gnuplot_quote(hex);
}

// The lines every script starts with: CSV input with a header line, plain (not enhanced) text.
std::string preamble(const std::string& title) {
  return "set datafile separator comma\n"
         "set datafile columnheaders\n"
         "set title " +
         gnuplot_quote(title) +
         " noenhanced\n"
         "set termoption noenhanced\n"
         "set border 3 lc rgb '#444444'\n"
         "set tics nomirror\n"
         "set grid ytics lc rgb '#dddddd' lw 1 dt 1\n";
}

// Viridis (Smith & van der Walt) at ten stops, for heat maps.
constexpr const char* kViridisPalette =
    "set palette defined (0 '#440154', 1 '#482878', 2 '#3E4A89', 3 '#31688E', 4 '#26828E', "
    "5 '#1F9E89', 6 '#35B779', 7 '#6DCD59', 8 '#B4DE2C', 9 '#FDE725')\n";

void require_table(const std::string& stem, const CsvTable& table, size_t min_columns) {
  if (!valid_stem(stem)) throw ReportError("figure name '" + stem + "' is not a plain file stem");
  if (table.header.size() < min_columns) {
    throw ReportError("figure " + stem + ": needs at least " + std::to_string(min_columns) +
                      " columns, has " + std::to_string(table.header.size()));
  }
  if (table.rows.empty()) throw ReportError("figure " + stem + ": no rows to plot");
}

// Okabe-Ito without black, the least legible (yellow) last, for lines.
constexpr size_t kLineColorOrder[7] = {5, 6, 3, 1, 7, 2, 4};

// Every n-th label on a category axis, so that at most ~40 labels show.
std::string xtic_expression(size_t rows) {
  const size_t every = std::max<size_t>(1, (rows + 39) / 40);
  if (every == 1) return "xtic(1)";
  return "xtic(int($0) % " + std::to_string(every) + " == 0 ? strcol(1) : '')";
}

}  // namespace

ProcessResult run_program(std::span<const std::string> argv,
                          const std::filesystem::path& working_dir) {
  if (argv.empty()) throw ReportError("run_program: no program given");
  const std::string& program = argv[0];
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string dir = working_dir.string();

  Fd out_read, out_write, err_read, err_write, status_read, status_write;
  make_pipe(out_read, out_write, program);
  make_pipe(err_read, err_write, program);
  // The child writes exec's errno here; the pipe closes on a successful exec (O_CLOEXEC).
  make_pipe(status_read, status_write, program);

  const pid_t pid = ::fork();
  if (pid < 0) throw ReportError("cannot start " + program + ": fork: " + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    int error = 0;
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(out_write.fd, 1) < 0 ||
        ::dup2(err_write.fd, 2) < 0 || ::chdir(dir.c_str()) != 0) {
      error = errno;
    } else {
      ::execvp(args[0], args.data());
      error = errno;
    }
    ssize_t ignored = ::write(status_write.fd, &error, sizeof error);
    (void)ignored;
    ::_exit(127);
  }
  out_write.reset();
  err_write.reset();
  status_write.reset();

  ProcessResult result;
  drain(out_read, err_read, result.stdout_text, result.stderr_text);
  int child_errno = 0;
  const ssize_t got = ::read(status_read.fd, &child_errno, sizeof child_errno);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof child_errno)) {
    throw ReportError("cannot run " + program + " in " + dir + ": " + std::strerror(child_errno));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string csv_number(double value) {
  if (!std::isfinite(value)) return "NaN";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", value);
  return buf;
}

void write_csv(const std::filesystem::path& file, const CsvTable& table) {
  std::ostringstream text;
  for (size_t i = 0; i < table.header.size(); ++i) {
    text << (i ? "," : "") << csv_cell(table.header[i]);
  }
  text << "\n";
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    if (row.size() != table.header.size()) {
      throw ReportError(file.string() + ": row " + std::to_string(r + 1) + " has " +
                        std::to_string(row.size()) + " cells, the header " +
                        std::to_string(table.header.size()));
    }
    for (size_t i = 0; i < row.size(); ++i) text << (i ? "," : "") << csv_cell(row[i]);
    text << "\n";
  }
  std::ofstream out(file, std::ios::binary);
  out << text.str();
  out.close();
  if (!out) throw ReportError("cannot write " + file.string());
}

std::string gnuplot_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "''";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "'";
}

Figure bar_figure(const BarChart& chart) {
  require_table(chart.stem, chart.table, 2);
  if (chart.series.empty()) throw ReportError("figure " + chart.stem + ": no series to draw");
  const std::string csv = chart.stem + ".csv";
  std::ostringstream gp;
  gp << preamble(chart.title);
  gp << "set style data histograms\n";
  gp << (chart.stacked ? "set style histogram rowstacked\n"
                       : "set style histogram clustered gap 1\n");
  gp << "set style fill solid 1.0 border rgb '#333333'\n";
  gp << "set boxwidth 0.8 relative\n";
  gp << "set key outside right top vertical noenhanced\n";
  gp << "set xtics rotate by -45 left\n";
  gp << "set yrange [0:*]\n";
  gp << "set xlabel " << gnuplot_quote(chart.x_label) << "\n";
  gp << "set ylabel " << gnuplot_quote(chart.y_label) << "\n";
  gp << "plot ";
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const BarSeries& s = chart.series[i];
    if (s.column < 1 || s.column >= chart.table.header.size()) {
      throw ReportError("figure " + chart.stem + ": series column " + std::to_string(s.column) +
                        " is outside the table");
    }
    gp << (i ? ", \\\n     '' " : gnuplot_quote(csv) + " ") << "using ($" << s.column + 1 << " * "
       << csv_number(chart.value_scale) << ")";
    if (i == 0) gp << ":" << xtic_expression(chart.table.rows.size());
    gp << " title " << gnuplot_quote(s.title) << " " << color_spec(s.color);
    gp << (s.patterned ? " fillstyle pattern 4 border rgb '#333333'" : "");
  }
  gp << "\n";
  return Figure{chart.stem, chart.title, chart.caption, {{csv, chart.table}}, gp.str()};
}

Figure heat_map_figure(const HeatMap& map) {
  require_table(map.stem, map.table, 3);
  const std::string csv = map.stem + ".csv";
  std::ostringstream gp;
  gp << preamble(map.title);
  gp << kViridisPalette;
  gp << "set grid noytics\n";
  gp << "set xlabel " << gnuplot_quote(map.x_label) << "\n";
  gp << "set ylabel " << gnuplot_quote(map.y_label) << "\n";
  gp << "set cblabel " << gnuplot_quote(map.value_label) << "\n";
  gp << "set cbrange [0:*]\n";
  gp << "set autoscale xfix\nset autoscale yfix\n";
  gp << "set yrange [*:*] reverse\n";
  gp << "unset key\n";
  gp << "plot " << gnuplot_quote(csv) << " using 1:2:($3/" << csv_number(map.value_scale)
     << ") with image pixels\n";
  return Figure{map.stem, map.title, map.caption, {{csv, map.table}}, gp.str()};
}

Figure line_figure(const LineChart& chart) {
  require_table(chart.stem, chart.table, 2);
  const std::string csv = chart.stem + ".csv";
  std::vector<size_t> columns = chart.series_columns;
  if (columns.empty()) {
    for (size_t c = 1; c < chart.table.header.size(); ++c) columns.push_back(c);
  }
  std::ostringstream gp;
  gp << preamble(chart.title);
  gp << "set key outside right top vertical noenhanced\n";
  gp << "set xlabel " << gnuplot_quote(chart.x_label) << "\n";
  gp << "set ylabel " << gnuplot_quote(chart.y_label) << "\n";
  gp << "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n";
  gp << "plot ";
  for (size_t i = 0; i < columns.size(); ++i) {
    const size_t column = columns[i];
    if (column < 1 || column >= chart.table.header.size()) {
      throw ReportError("figure " + chart.stem + ": series column " + std::to_string(column) +
                        " is outside the table");
    }
    // Okabe-Ito without black first, then dash patterns and point shapes tell series apart.
    gp << (i ? ", \\\n     '' " : gnuplot_quote(csv) + " ") << "using "
       << (chart.categorical_x ? "0:" : "1:") << column + 1;
    if (chart.categorical_x && i == 0) gp << ":" << xtic_expression(chart.table.rows.size());
    gp << " with linespoints lw 2 pt " << (i % 12) + 1 << " ps 1.2 "
       << color_spec(kOkabeIto[kLineColorOrder[i % 7]]) << " dt " << (i / 7) % 5 + 1 << " title "
       << gnuplot_quote(chart.table.header[column]);
  }
  gp << "\n";
  return Figure{chart.stem, chart.title, chart.caption, {{csv, chart.table}}, gp.str()};
}

Figure scatter_figure(const ScatterChart& chart) {
  require_table(chart.stem, chart.table, 3);
  const size_t columns = chart.table.header.size();
  for (size_t c : {chart.x_column, chart.y_column, chart.color_column}) {
    if (c >= columns) {
      throw ReportError("figure " + chart.stem + ": column " + std::to_string(c) +
                        " is outside the table");
    }
  }
  const std::string csv = chart.stem + ".csv";
  std::ostringstream gp;
  gp << preamble(chart.title);
  gp << kViridisPalette;
  gp << "set xlabel " << gnuplot_quote(chart.x_label) << "\n";
  gp << "set ylabel " << gnuplot_quote(chart.y_label) << "\n";
  gp << "set cblabel " << gnuplot_quote(chart.color_label) << "\n";
  gp << "set cbrange [0:1]\n";
  gp << "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n";
  gp << "unset key\n";
  gp << "plot " << gnuplot_quote(csv) << " using " << chart.x_column + 1 << ":($"
     << chart.y_column + 1 << " * " << csv_number(chart.y_scale) << "):" << chart.color_column + 1
     << " with points pt 7 ps 0.9 lc palette\n";
  return Figure{chart.stem, chart.title, chart.caption, {{csv, chart.table}}, gp.str()};
}

TimeUnit time_unit_for(double max_us) {
  if (max_us >= 1e7) return {"s", 1e-6};
  if (max_us >= 1e4) return {"ms", 1e-3};
  return {"us", 1.0};
}

size_t histogram_bins(size_t count) {
  const auto bins = static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(count))));
  return std::clamp<size_t>(bins, 5, 40);
}

Figure distribution_figure(const Distribution& spec, std::span<const double> samples) {
  if (!valid_stem(spec.stem)) throw ReportError("figure name '" + spec.stem + "' is not valid");
  if (samples.empty()) throw ReportError("figure " + spec.stem + ": no samples");
  const SampleSet set(samples);
  double lo = set.min();
  double hi = set.max();
  if (!(lo < hi)) {  // one value: a narrow range around it
    const double half = std::max(std::abs(lo) * 0.01, 1e-6);
    lo -= half;
    hi += half;
  }
  Histogram histogram(lo, hi, histogram_bins(samples.size()));
  histogram.add(samples);
  const std::string unit = spec.unit;
  CsvTable hist{{"bin_lo_" + unit, "bin_hi_" + unit, "count"}, {}};
  for (size_t b = 0; b < histogram.bin_count(); ++b) {
    hist.rows.push_back({csv_number(histogram.bin_lo(b)), csv_number(histogram.bin_hi(b)),
                         std::to_string(histogram.counts()[b])});
  }
  CsvTable cdf{{"value_" + unit, "fraction"}, {}};
  for (const CdfPoint& p : empirical_cdf(samples)) {
    cdf.rows.push_back({csv_number(p.value), csv_number(p.fraction)});
  }
  const std::string hist_csv = spec.stem + "_histogram.csv";
  const std::string cdf_csv = spec.stem + "_cdf.csv";
  const std::string shown_unit = spec.display_unit.empty() ? unit : spec.display_unit;
  const std::string x_label = spec.quantity + " (" + shown_unit + ")";
  const std::string scale = csv_number(spec.display_scale);
  const double p50 = set.p50() * spec.display_scale;
  const double p99 = set.p99() * spec.display_scale;
  const CdfPoint first = empirical_cdf(samples).front();

  std::ostringstream gp;
  gp << preamble("");
  gp << "unset title\n";
  gp << "p50 = " << csv_number(p50) << "\np99 = " << csv_number(p99) << "\n";
  gp << "set multiplot layout 1,2 title " << gnuplot_quote(spec.title) << "\n";
  gp << "set arrow 1 from p50, graph 0 to p50, graph 1 nohead lw 2 lc rgb '#D55E00' dt 2 front\n";
  gp << "set arrow 2 from p99, graph 0 to p99, graph 1 nohead lw 2 lc rgb '#CC79A7' dt 4 front\n";
  gp << "set key below horizontal noenhanced\n";
  gp << "set xtics rotate by -30 left\n";
  gp << "set xlabel " << gnuplot_quote(x_label) << "\n";
  gp << "set ylabel 'samples per bin'\n";
  gp << "set yrange [0:*]\n";
  gp << "set style fill solid 0.8 border rgb '#333333'\n";
  gp << "plot " << gnuplot_quote(hist_csv) << " using (($1 + $2) / 2 * " << scale
     << "):3:(($2 - $1) * " << scale << ") with boxes lc rgb '#0072B2' title 'samples', \\\n"
     << "     NaN with lines lw 2 lc rgb '#D55E00' dt 2 title sprintf('p50 %.4g', p50), \\\n"
     << "     NaN with lines lw 2 lc rgb '#CC79A7' dt 4 title sprintf('p99 %.4g', p99)\n";
  gp << "set ylabel 'fraction of samples <= x'\n";
  gp << "set yrange [0:1.05]\n";
  gp << "set key below horizontal\n";
  // The CDF's rise at the smallest sample, from 0.
  gp << "set arrow 3 from " << csv_number(first.value * spec.display_scale) << ", 0 to "
     << csv_number(first.value * spec.display_scale) << ", " << csv_number(first.fraction)
     << " nohead lw 2 lc rgb '#009E73'\n";
  gp << "plot " << gnuplot_quote(cdf_csv) << " using ($1 * " << scale
     << "):2 with steps lw 2 lc rgb '#009E73' title 'empirical CDF', \\\n"
     << "     NaN with lines lw 2 lc rgb '#D55E00' dt 2 title 'p50', \\\n"
     << "     NaN with lines lw 2 lc rgb '#CC79A7' dt 4 title 'p99'\n";
  gp << "unset multiplot\n";
  return Figure{spec.stem, spec.title, spec.caption, {{hist_csv, hist}, {cdf_csv, cdf}}, gp.str()};
}

std::string render_figure(const std::filesystem::path& dir, const Figure& figure,
                          const std::string& gnuplot) {
  if (!valid_stem(figure.stem)) {
    throw ReportError("figure name '" + figure.stem + "' is not a plain file stem");
  }
  for (const auto& [name, table] : figure.data) write_csv(dir / name, table);
  const std::string svg = figure.stem + ".svg";
  const std::string gp_name = figure.stem + ".gp";
  {
    std::ofstream gp(dir / gp_name, std::ios::binary);
    gp << "# " << figure.title << "\n# Re-render from this folder: gnuplot " << gp_name << "\n";
    gp << "set terminal svg size 900,480 font 'sans,12' background rgb 'white'\n";
    gp << "set output " << gnuplot_quote(svg) << "\n";
    gp << figure.script;
    gp << "unset output\n";
    gp.close();
    if (!gp) throw ReportError("cannot write " + (dir / gp_name).string());
  }
  std::filesystem::remove(dir / svg);
  const std::vector<std::string> argv = {gnuplot, gp_name};
  ProcessResult result;
  try {
    result = run_program(argv, dir);
  } catch (const ReportError& e) {
    throw ReportError(std::string(e.what()) +
                      " (report figures need gnuplot: install Debian's gnuplot-nox, e.g. "
                      "with tools/install-deps.sh)");
  }
  if (result.exit_code != 0) {
    throw ReportError("gnuplot failed on " + (dir / gp_name).string() + " (exit " +
                      std::to_string(result.exit_code) + "): " + result.stderr_text);
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(dir / svg, ec);
  if (ec || size == 0) {
    throw ReportError("gnuplot drew no " + (dir / svg).string() + ": " + result.stderr_text);
  }
  return result.stderr_text;
}

}  // namespace moesim
