// The benchmark report: tables with the right averages and wins, CSV/JSON, plots.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mambaseq/report.h"
#include "mambaseq/suite_report.h"

using namespace mambaseq;
namespace fs = std::filesystem;

TEST(SuiteReport, TablesAveragesWinsAndPlots) {
  const std::string dir = ::testing::TempDir() + "mambaseq_suite_" + std::to_string(::getpid());
  fs::remove_all(dir);
  std::vector<SuiteRow> rows;
  const double acc[3][4] = {{0.9, 0.8, 0.7, 0.95}, {0.85, 0.82, 0.6, 0.9}, {0.7, 0.6, 0.65, 0.8}};
  const char* models[3] = {"mamba", "cnn", "transformer"};
  const char* tasks[4] = {"promoter_all", "enhancers", "H3", "H4"};
  const char* cats[4] = {"promoter", "enhancer", "histone", "histone"};
  for (int m = 0; m < 3; ++m)
    for (int t = 0; t < 4; ++t) {
      SuiteRow r;
      r.task = tasks[t];
      r.category = cats[t];
      r.model = models[m];
      r.params = 1000000 * (m + 1);
      r.train_seconds = 10.0 * (m + 1);
      r.test.accuracy = acc[m][t];
      r.test.mcc = 2 * acc[m][t] - 1;
      r.test.n = 100;
      r.test.confusion = {{40, 10}, {5, 45}};
      rows.push_back(r);
    }
  const std::string md = write_suite_report(dir, "unit", rows, {{"promoter_all", "paper", 0.9, 0.8, 0.9, 0.95}});
  EXPECT_NE(md.find("| **average over the 4 task(s) every model ran** | | 83.75 | 79.25 | 68.75 |"), std::string::npos)
      << md;
  EXPECT_EQ(md.find("each model's own tasks"), std::string::npos) << md;  // the same set: one row
  EXPECT_NE(md.find("| mamba | 3 of 4 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| cnn | 1 of 4 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| histone | 2 | 82.50 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| enhancers | enhancer | 80.00 | **82.00** | 60.00 | cnn |"), std::string::npos) << md;
  std::ifstream jf(dir + "/results.json");
  auto j = nlohmann::json::parse(jf);
  ASSERT_EQ(j.size(), 12u);
  EXPECT_EQ(j[0]["task"], "promoter_all");
  EXPECT_DOUBLE_EQ(j[0]["accuracy"].get<double>(), 0.9);
  std::ifstream cf(dir + "/results.csv");
  std::string header;
  std::getline(cf, header);
  EXPECT_EQ(header.rfind("suite,task,category,model,params", 0), 0u);
  if (have_gnuplot())
    for (const char* png : {"accuracy_by_task.png", "category_summary.png", "mcc_radar.png", "efficiency.png"}) {
      ASSERT_TRUE(fs::exists(dir + "/" + png)) << png;
      std::ifstream f(dir + "/" + png, std::ios::binary);
      char sig[8];
      f.read(sig, 8);
      EXPECT_EQ(std::string(sig + 1, 3), "PNG") << png;
    }
  // A model that did not run a task: the headline average takes the common tasks only,
  // and wins count out of the tasks each model ran.
  rows.pop_back();  // transformer × H4
  const std::string md2 = write_suite_report(dir + "_partial", "unit", rows, {});
  EXPECT_NE(md2.find("| **average over the 3 task(s) every model ran** | | 80.00 | 75.67 | 65.00 |"), std::string::npos)
      << md2;
  EXPECT_NE(md2.find("| average over each model's own tasks | | 83.75 | 79.25 | 65.00 |"), std::string::npos) << md2;
  EXPECT_NE(md2.find("| transformer | 0 of 3 |"), std::string::npos) << md2;
  if (!std::getenv("MAMBASEQ_KEEP_TEST_OUTPUT")) fs::remove_all(dir), fs::remove_all(dir + "_partial");
}
