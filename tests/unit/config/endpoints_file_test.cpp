// config/loader: endpoints files (discovery.file). A good file gives its endpoints; a malformed,
// half-written or empty one gives errors with file:line:col and no endpoints, so the caller keeps the
// set it had.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/loader.hpp"

namespace drover::config {
namespace {

class EndpointsFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("drover-endpoints-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(std::string_view text, const std::string& name = "endpoints.yaml") {
        if (!text.empty() && text.front() == '\n') { text.remove_prefix(1); }
        const auto path = (dir_ / name).string();
        std::ofstream{path} << text;
        return path;
    }

    std::filesystem::path dir_;
};

std::string listing(const EndpointsFileResult& r) {
    std::string out;
    for (const auto& e : r.errors) { out += "  " + e.str() + "\n"; }
    return out.empty() ? "  (no errors)\n" : out;
}

::testing::AssertionResult HasError(const EndpointsFileResult& r, int line, int column, std::string_view path,
                                    std::string_view text) {
    for (const auto& e : r.errors) {
        if (e.mark.line == line && e.mark.column == column && e.path == path &&
            e.message.find(text) != std::string::npos) {
            return ::testing::AssertionSuccess();
        }
    }
    return ::testing::AssertionFailure() << "no error " << line << ":" << column << ": " << path << ": ..."
                                         << text << "...\nerrors:\n"
                                         << listing(r);
}

TEST_F(EndpointsFileTest, GoodFileGivesEveryEndpointInOrder) {
    const auto path = write(R"(
endpoints:
  - address: 10.0.0.1:5432
  - { address: 10.0.0.2:5432, weight: 2 }
  - "[fd00::3]:5432"
  - 10.0.0.4:6432
)");
    const auto r = load_endpoints_file(path);
    ASSERT_TRUE(r.ok()) << listing(r);
    ASSERT_TRUE(r.endpoints);
    ASSERT_EQ(r.endpoints->size(), 4u);
    EXPECT_EQ((*r.endpoints)[0].address, (Address{"10.0.0.1", 5432}));
    EXPECT_EQ((*r.endpoints)[0].weight, 1u);
    EXPECT_EQ((*r.endpoints)[1].address, (Address{"10.0.0.2", 5432}));
    EXPECT_EQ((*r.endpoints)[1].weight, 2u);
    EXPECT_EQ((*r.endpoints)[2].address, (Address{"fd00::3", 5432}));
    EXPECT_EQ((*r.endpoints)[3].address, (Address{"10.0.0.4", 6432}));
}

TEST_F(EndpointsFileTest, ConfigMdExampleLoads) {
    const auto path = write(R"(
endpoints:
  - address: 10.0.0.1:5432
  - { address: 10.0.0.2:5432, weight: 2 }
)");
    const auto r = load_endpoints_file(path);
    ASSERT_TRUE(r.ok()) << listing(r);
    EXPECT_EQ(r.endpoints->size(), 2u);
}

TEST_F(EndpointsFileTest, MalformedEntriesAreAllReportedWithFileLineAndColumn) {
    const auto path = write(R"(
endpoints:
  - address: 10.0.0.1:5432
  - { address: db.internal:5432 }
  - { address: 10.0.0.3:5432, weight: 0 }
  - { adress: 10.0.0.4:5432 }
  - 10.0.0.1:5432
  - 10.0.0.6
)");
    const auto r = load_endpoints_file(path);
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.endpoints);
    EXPECT_TRUE(HasError(r, 3, 16, "endpoints[1].address", "'db.internal' must be an IP address"));
    EXPECT_TRUE(HasError(r, 4, 39, "endpoints[2].weight", "must be between 1 and 10000"));
    EXPECT_TRUE(HasError(r, 5, 7, "endpoints[3].adress", "unknown key 'adress' (did you mean 'address'?)"));
    EXPECT_TRUE(HasError(r, 5, 5, "endpoints[3].address", "missing required key 'address'"));
    EXPECT_TRUE(HasError(r, 6, 5, "endpoints[4]", "10.0.0.1:5432 is listed twice (first at line 2)"));
    EXPECT_TRUE(HasError(r, 7, 5, "endpoints[5]", "address needs a port"));
    EXPECT_EQ(r.errors.size(), 6u) << listing(r);
    // The one-line form the resolver logs: the file, the line and column, the key path and the reason.
    EXPECT_EQ(r.errors.front().str(),
              path + ":3:16: endpoints[1].address: 'db.internal' must be an IP address; use discovery.dns "
                     "for names");
}

TEST_F(EndpointsFileTest, HalfWrittenFileIsASyntaxErrorWithItsLine) {
    // What a reader sees when a writer without rename-over is caught half-way through a flow map.
    const auto path = write("endpoints:\n  - address: 10.0.0.1:5432\n  - { address: 10.0.0.2:54");
    const auto r = load_endpoints_file(path);
    EXPECT_FALSE(r.endpoints);
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].mark.file, path);
    EXPECT_EQ(r.errors[0].mark.line, 3);
}

TEST_F(EndpointsFileTest, HalfWrittenFileCutInsideAKeyIsAnError) {
    const auto path = write("endpoints:\n  - address: 10.0.0.1:5432\n  - addr");
    const auto r = load_endpoints_file(path);
    EXPECT_FALSE(r.endpoints);
    EXPECT_TRUE(HasError(r, 3, 5, "endpoints[1]", "address")) << listing(r);
}

TEST_F(EndpointsFileTest, EmptyFileIsAnErrorNotAnEmptySet) {
    // Truncated to nothing (open with O_TRUNC, not written yet): never "no hosts".
    const auto r = load_endpoints_file(write(""));
    EXPECT_FALSE(r.endpoints);
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].mark.line, 1);
    EXPECT_NE(r.errors[0].message.find("empty endpoints file"), std::string::npos);
}

TEST_F(EndpointsFileTest, EmptyListIsAnError) {
    // An empty list is what a writer caught half-way ("endpoints:" and nothing yet) leaves behind, so
    // it keeps the last hosts like any other invalid file.
    auto r = load_endpoints_file(write("endpoints: []\n"));
    EXPECT_FALSE(r.endpoints);
    EXPECT_TRUE(HasError(r, 1, 12, "endpoints", "endpoints needs at least one address"));
    r = load_endpoints_file(write("endpoints:\n"));
    EXPECT_FALSE(r.endpoints);
    EXPECT_TRUE(HasError(r, 1, 1, "endpoints", "endpoints needs at least one address"));
}

TEST_F(EndpointsFileTest, MissingKeyUnknownKeyAndWrongShapeAreErrors) {
    auto r = load_endpoints_file(write("hosts: [10.0.0.1:80]\n"));
    EXPECT_TRUE(HasError(r, 1, 1, "hosts", "unknown key 'hosts'"));
    EXPECT_TRUE(HasError(r, 1, 1, "endpoints", "missing required key 'endpoints'"));
    r = load_endpoints_file(write("- 10.0.0.1:80\n"));
    EXPECT_TRUE(HasError(r, 1, 1, "", "expected a map"));
    r = load_endpoints_file(write("endpoints: 10.0.0.1:80\n"));
    EXPECT_TRUE(HasError(r, 1, 12, "endpoints", "expected a list"));
    r = load_endpoints_file(write("endpoints: [10.0.0.1:80]\n---\nendpoints: [10.0.0.2:80]\n"));
    EXPECT_TRUE(HasError(r, 3, 1, "", "one YAML document"));
}

TEST_F(EndpointsFileTest, MissingFileIsAnError) {
    const auto path = (dir_ / "nope.yaml").string();
    const auto r = load_endpoints_file(path);
    EXPECT_FALSE(r.endpoints);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].str(), path + ": cannot read file: No such file or directory");
}

TEST(EndpointsString, SourceNameIsUsedInMarks) {
    const auto r = load_endpoints_string("endpoints: [10.0.0.1]\n", "orchestrator.yaml");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].mark.file, "orchestrator.yaml");
    EXPECT_EQ(r.errors[0].mark.line, 1);
    EXPECT_EQ(r.errors[0].mark.column, 13);
}

}  // namespace
}  // namespace drover::config
